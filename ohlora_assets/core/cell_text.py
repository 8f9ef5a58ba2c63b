"""The text of one cell (or synonym word) as a person sees it: what the reader changes on the way in, and
what a cell must not hold.

Pure string functions; where in a file a problem sits is `input_files`' business.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata

# Characters that render as nothing and are dropped wherever they are: Unicode's default-ignorable code points
# (soft hyphen, grapheme joiner, Khmer inherent vowels, zero-width space and non-joiner, bidi and Mongolian marks,
# word joiner and the deprecated format characters, Hangul fillers, BOM, shorthand and musical format controls,
# language tags, ideographic variation selectors) and the interlinear annotation marks, except the emoji parts below.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b\u200c\u200e\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufeff\uffa0\ufff0-\ufffb\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e001f\U000e0080-\U000e0fff]"
)
# Zero-width joiner, variation selectors and tag characters: parts of emoji sequences (👩‍💻, ❤️, 1️⃣,
# subdivision flags), kept there and dropped anywhere else, where they render as nothing.
_EMOJI_PARTS = re.compile("[\u200d\ufe00-\ufe0f\U000e0020-\U000e007f]")
_BLACK_FLAG = "\U0001f3f4"
# Line and paragraph separators are line breaks; the braille blank renders as a space.
_AS_LINE_BREAK = str.maketrans({"\u2028": "\n", "\u2029": "\n"})
_BRAILLE_BLANK = "\u2800"
_ALLOWED_CONTROLS = {"\n", "\t"}
# What Excel and Google Sheets write into a cell whose formula failed; LibreOffice writes `Err:` and a number,
# and Google Sheets `Loading...` for a cell still waiting on IMPORTRANGE or GOOGLETRANSLATE.
_SPREADSHEET_ERRORS = frozenset({
    "#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#ERROR!", "#SPILL!", "#CALC!",
    "#GETTING_DATA", "#FIELD!", "#BLOCKED!", "#CONNECT!", "#BUSY!", "#UNKNOWN!", "LOADING...",
})
_LIBREOFFICE_ERROR = re.compile(r"Err:\d{3}")


def _is_emoji(char: str) -> bool:
    return bool(char) and unicodedata.category(char) in ("So", "Sk")


def _in_emoji_sequence(text: str, position: int) -> bool:
    """Whether the joiner, selector or tag at `position` belongs to the emoji sequence around it."""
    char, before = text[position], text[position - 1] if position else ""
    after = text[position + 1: position + 2]
    if char == "\u200d":  # joins two emoji, the first possibly with its selector
        return (_is_emoji(before) or before == "\ufe0f") and _is_emoji(after)
    if "\U000e0020" <= char <= "\U000e007f":  # a run of tags after a black flag
        return before == _BLACK_FLAG or "\U000e0020" <= before <= "\U000e007f"
    # A variation selector styles a symbol, digit or punctuation (keycaps); after a letter or space it does nothing.
    return bool(before) and not before.isspace() and not unicodedata.category(before).startswith(("L", "M"))


def _drop_invisible(text: str) -> str:
    text = _INVISIBLE.sub("", text)
    return _EMOJI_PARTS.sub(lambda m: m.group() if _in_emoji_sequence(m.string, m.start()) else "", text)


def unify_line_breaks(text: str) -> str:
    """`text` with CRLF and CR line breaks as "\\n", as the csv module counts lines."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def clean_text(text: str) -> tuple[str, set[str]]:
    """`text` in NFC without invisible characters and with "\\n" line breaks; what changed."""
    changes = set()
    text = unify_line_breaks(text).translate(_AS_LINE_BREAK)
    # Dropped before composing: a zero-width space between a decomposed initial and vowel would keep them apart.
    visible = _drop_invisible(text).replace(_BRAILLE_BLANK, " ")
    if visible != text:
        changes.add("invisible")
    nfc = unicodedata.normalize("NFC", visible)
    if nfc != visible:
        changes.add("nfc")
    return nfc, changes


def character_problem(text: str) -> tuple[str, str] | None:
    """(what, fix) for the first character in `text` that must not be there: a control character (tab and
    line break allowed), half of an emoji (a lone surrogate, as JavaScript leaves when it cuts a string
    inside one; it cannot be written as UTF-8), or U+FFFD, which a program writes where it could not decode
    a character."""
    for position, char in enumerate(text, 1):
        category = unicodedata.category(char)
        if category == "Cc" and char not in _ALLOWED_CONTROLS:
            kind = "a NUL byte" if char == "\0" else "a control character"
            fix = "delete that character (it is invisible in most editors)"
            return f"{kind} (U+{ord(char):04X}) at character {position}", fix
        if category == "Cs":
            return (f"half of a character (the lone surrogate U+{ord(char):04X}) at character {position}: the text "
                    "was cut inside an emoji", "write the whole emoji again, or delete what is left of it")
        if char == "\ufffd":
            return (f"the replacement character \ufffd (U+FFFD) at character {position}: the text was damaged by an "
                    "earlier conversion between encodings", "restore the text from the original and save it as UTF-8")
    return None


def _single_byte_readings() -> dict[str, int]:
    """Character -> byte, as Latin-1 (every byte as the code point of its value, which is also what Windows,
    and so Excel, does with the five bytes Windows-1252 leaves undefined) and as Windows-1252 reads 0x80-0x9F.
    No character is both: Windows-1252's are outside U+0000-U+00FF."""
    table = {chr(byte): byte for byte in range(256)}
    for byte in range(0x80, 0xA0):
        with contextlib.suppress(UnicodeDecodeError):
            table[bytes([byte]).decode("cp1252")] = byte
    return table


_SINGLE_BYTE_READINGS = _single_byte_readings()


def double_encoding_problem(text: str) -> tuple[str, str] | None:
    """(what, fix) when `text` is UTF-8 that a program read as Windows-1252 or Latin-1 and saved again:
    `로라야` becomes `ë¡œë¼ì•¼`, which is valid text and would otherwise pass every later check. Read
    from the cell as it is in the file, before `clean_text` drops the soft hyphens such text holds."""
    if text.isascii():
        return None
    try:
        original = bytes(_SINGLE_BYTE_READINGS[char] for char in text).decode("utf-8")
    except (KeyError, UnicodeDecodeError):  # a character outside Windows-1252, or bytes that are not UTF-8
        return None
    shown = text if len(text) <= 24 else text[:24] + "..."
    was = original if len(original) <= 16 else original[:16] + "..."
    return (f"text that was UTF-8 read as Windows-1252 or Latin-1 and saved again ({shown!r} was {was!r})",
            'export the sheet again from the original file as "CSV UTF-8"; when a spreadsheet opens a CSV, '
            "import it as UTF-8 (Data > From Text/CSV) instead of opening it directly")


def cell_problem(typed: str, cleaned: str) -> tuple[str, str] | None:
    """(what, fix) for a cell or word: `typed` as the file holds it, `cleaned` as `clean_text` returns it."""
    return double_encoding_problem(typed) or character_problem(cleaned)


def spreadsheet_error(value: str) -> str | None:
    """The error value a spreadsheet exported in place of a failed formula's text, if `value` is one."""
    shown = value.strip()
    return shown if shown.upper() in _SPREADSHEET_ERRORS or _LIBREOFFICE_ERROR.fullmatch(shown) else None
