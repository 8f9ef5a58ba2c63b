"""Text normalization applied identically before training and before scoring.

Users dodge filters by inserting noise into words (`사1랑2해`, `투.표`, `사 랑 해`), by spelling a word
out in its letters (`ㅅㅏㄹㅏㅇㅎㅐ`) or by pasting control characters and emoji; the model only ever sees
the cleaned form, so the dodge does not work and a 10,000-character paste costs no more than a short prompt.
"""

from __future__ import annotations

import re
import unicodedata

from ohlora_assets.core import hangul

# The encoder reads 64 tokens, about 64-80 characters of Korean, so a longer prompt is scored in windows of
# WINDOW_CHARS, half a window apart: every stretch of up to half a window (each training prompt is shorter)
# lies whole in one, and a harmful sentence after a page of greetings is read. Up to MAX_CHARS are scored;
# a longer paste costs no more.
WINDOW_CHARS = 64
MAX_CHARS = 1024

# 1-2 characters that are neither Hangul, Latin, nor space, wedged between two Hangul syllables.
_NOISE_IN_WORD = re.compile(rf"(?<=[가-힣])[^{hangul.LETTERS}A-Za-z\s]{{1,2}}(?=[가-힣])")
# Three or more single syllables separated by single spaces: `사 랑 해` -> `사랑해`.
_SPACED_SYLLABLES = re.compile(r"(?<![가-힣])[가-힣](?: [가-힣](?![가-힣])){2,}")
_REPEATS = re.compile(r"(.)\1{3,}")
# Compatibility jamo (the letters a keyboard types) as Unicode orders them in a composed syllable.
_INITIALS = "ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ"
_VOWELS = "ㅏㅐㅑㅒㅓㅔㅕㅖㅗㅘㅙㅚㅛㅜㅝㅞㅟㅠㅡㅢㅣ"
_FINALS = "ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ"  # final index 1..27; 0 is none
_JAMO_RUN = re.compile("[ㄱ-ㅣ]{2,}")
_SPACES = re.compile(r"\s+")
# A terminal's colour and cursor codes (ESC [ ... letter), pasted whole: `\x1b[31m김치녀\x1b[0m`.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
# Unicode categories dropped outright: controls/format (zero-width, bidi), symbols (emoji), private use, unassigned.
_DROPPED = {"Cc", "Cf", "Cs", "Co", "Cn", "So", "Sk", "Mn", "Me"}


def _is_hangul(char: str) -> bool:
    return "가" <= char <= "힣" or "ㄱ" <= char <= "ㅣ"


def _clean_char(char: str) -> str:
    if char.isspace():
        return " "
    if _is_hangul(char):
        return char
    # NFKC folds full-width letters and digits; applied per character so Hangul jamo are left alone.
    folded = unicodedata.normalize("NFKC", char)
    return "".join(c for c in folded if unicodedata.category(c) not in _DROPPED)


def _spelled_syllables(run: str) -> str | None:
    """The syllables a run of letters spells (`ㅅㅏㄹㅏㅇ` -> `사랑`), or None unless the whole run spells
    syllables: `ㅋㅋ`, `ㅠㅠ`, `ㅇㅋ` and `ㅋㅋㅠㅠ` are chat shorthand and stay as typed."""
    syllables, i = [], 0
    while i < len(run):
        if i + 1 >= len(run) or run[i] not in _INITIALS or run[i + 1] not in _VOWELS:
            return None
        initial, vowel, final = _INITIALS.index(run[i]), _VOWELS.index(run[i + 1]), 0
        i += 2
        # A consonant closes this syllable unless a vowel follows it, which makes it the next one's initial.
        if i < len(run) and run[i] in _FINALS and not (i + 1 < len(run) and run[i + 1] in _VOWELS):
            final = _FINALS.index(run[i]) + 1
            i += 1
        syllables.append(chr(0xAC00 + (initial * len(_VOWELS) + vowel) * (len(_FINALS) + 1) + final))
    return "".join(syllables)


def normalize_prompt(text: str) -> str:
    """The form of `text` the ethics model reads. Total: any string in, a (possibly empty) string out."""
    text = unicodedata.normalize("NFC", _ANSI_ESCAPE.sub("", text[: MAX_CHARS * 4]))
    text = "".join(_clean_char(c) for c in text)
    text = _JAMO_RUN.sub(lambda m: _spelled_syllables(m.group()) or m.group(), text)
    text = _NOISE_IN_WORD.sub("", text)
    text = _SPACED_SYLLABLES.sub(lambda m: m.group(0).replace(" ", ""), text)
    text = _REPEATS.sub(r"\1\1\1", text)
    return _SPACES.sub(" ", text).strip().lower()[:MAX_CHARS].rstrip()


def prompt_windows(normalized: str) -> list[str]:
    """What the encoder reads of a normalized prompt: itself when it fits one window, else overlapping
    windows of WINDOW_CHARS starting every half window."""
    if len(normalized) <= WINDOW_CHARS:
        return [normalized]
    step = WINDOW_CHARS // 2
    starts = range(0, len(normalized) - step, step)
    return [normalized[start: start + WINDOW_CHARS].strip() for start in starts]
