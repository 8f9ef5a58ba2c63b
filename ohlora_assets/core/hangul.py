"""The Hangul letters as one regex character-class body, for every module that asks "is this Korean"."""

# Precomposed syllables and the compatibility jamo a keyboard types alone (ㅋㅋ, ㅠㅠ); `[{LETTERS}]` in a pattern.
LETTERS = "가-힣ㄱ-ㅣ"
