"""Synonym augmentation of user inputs, seeded per (seed, epoch, row) for reproducible variety."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from ohlora_assets.core.cell_text import cell_problem, clean_text
from ohlora_assets.core.data_issues import DataIssue, DataValidationError, change_notes
from ohlora_assets.core.formats import FORMAT_MARKERS, question_start
from ohlora_assets.core.input_files import DEFAULT_MAX_CELL_CHARS
from ohlora_assets.core.text_decoding import decode_utf8, read_input_bytes

SynonymGroups = list[list[str]]

_SHAPE_FIX = 'write a JSON array of groups, each an array of two or more words: [["오!", "우와!"], ["나는 ", "난 "]]'


def read_synonym_groups(
    path: str | Path, max_word_chars: int = DEFAULT_MAX_CELL_CHARS
) -> tuple[SynonymGroups, list[DataIssue]]:
    """The groups of a synonyms JSON (words in NFC, invisible characters removed) and notes on what
    was changed; every problem is a DataIssue located by group (1-based) and word."""
    name = str(path)
    text = decode_utf8(read_input_bytes(path), name, kind="JSON")
    try:
        groups = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataValidationError([DataIssue(
            name, None, None, f"not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}", _SHAPE_FIX
        )]) from None
    except RecursionError:
        raise DataValidationError([DataIssue(
            name, None, None, "the arrays are nested thousands deep: this is not a list of synonym groups", _SHAPE_FIX
        )]) from None
    except ValueError:  # after JSONDecodeError, its subclass: a number past Python's 4,300-digit limit
        raise DataValidationError([DataIssue(
            name, None, None, "the file holds a number thousands of digits long: this is not a list of synonym groups",
            _SHAPE_FIX)]) from None
    if not isinstance(groups, list) or not groups:
        problem = "the file holds no synonym groups" if groups == [] else "the file is not a JSON array of groups"
        raise DataValidationError([DataIssue(name, None, None, problem, _SHAPE_FIX)])

    issues, cleaned = [], []
    first_change: dict[str, tuple[int | None, str | None]] = {}
    change_counts: dict[str, int] = {}
    group_of: dict[str, int] = {}
    for number, group in enumerate(groups, 1):
        def issue(problem: str, fix: str, word: int | None = None) -> None:
            issues.append(DataIssue(name, number, None if word is None else f"word {word}", problem, fix, "group"))

        if not isinstance(group, list) or len(group) < 2:
            as_written = json.dumps(group, ensure_ascii=False)
            size = f"has {len(group)} word(s)" if isinstance(group, list) else f"is not an array ({as_written})"
            issue(f"the group {size}; a group needs at least two words to swap between", _SHAPE_FIX)
            continue
        words = []
        for position, word in enumerate(group, 1):
            if not isinstance(word, str):
                as_written = json.dumps(word, ensure_ascii=False)
                issue(f"{as_written} is not a string", "put the word in double quotes", position)
                continue
            typed = word
            word, changes = clean_text(typed)
            for change in changes:
                first_change.setdefault(change, (number, f"word {position}"))
                change_counts[change] = change_counts.get(change, 0) + 1
            problem = cell_problem(typed, word)
            if not word.strip():
                issue("the word is empty or only spaces", "delete it or write the word", position)
            elif problem:
                issue(f"the word contains {problem[0]}", problem[1], position)
            elif marks := [mark for mark in FORMAT_MARKERS if mark in word]:
                issue(f"the word contains {', '.join(marks)}, a mark the prompt format writes: swapped into a "
                      "prompt, it would end or split it there", "delete the mark from the word", position)
            elif len(word) > max_word_chars:
                issue(f"the word has {len(word):,} characters; the limit is {max_word_chars:,}",
                      "shorten it, or raise max_cell_chars in the dataset's run config", position)
            elif word in group_of:
                where = "earlier in this group" if group_of[word] == number else f"in group {group_of[word]}"
                issue(f"{word!r} is already {where}", "keep each word in one group, once", position)
            else:
                group_of[word] = number
                words.append(word)
        cleaned.append(words)
    if issues:
        raise DataValidationError(issues)
    return cleaned, change_notes(name, first_change, change_counts, unit="group")


def load_synonym_groups(path: str | Path) -> SynonymGroups:
    return read_synonym_groups(path)[0]


class SynonymSwapper:
    """Replaces each occurrence of any group member in the user's own words with a random member of the same
    group. The time tag, memory prefix and summary wrapper stay as written: `(지금은 토요일 오전)` is a format the
    chat writes, not words a user chose, and a group such as ["오전", "아침"] must not break it."""

    def __init__(self, groups: SynonymGroups):
        self.group_of = {word: group for group in groups for word in group}
        # Longest first, so that "우와!" wins over "우와" at the same position.
        alternatives = sorted(self.group_of, key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(word) for word in alternatives))

    def swap(self, text: str, rng: random.Random) -> str:
        start = question_start(text)
        return text[:start] + self.pattern.sub(lambda match: rng.choice(self.group_of[match.group(0)]), text[start:])

    def variant(self, texts: list[str], seed: int, epoch: int, held_out: frozenset[str] = frozenset()) -> list[str]:
        """The epoch's augmented copy of `texts`; row i depends only on (seed, epoch, i). A variant that reads
        as one of `held_out` (the validation inputs, spacing aside) keeps its row's own words: training on it
        would put a validation prompt into the training data."""
        variants = []
        for i, text in enumerate(texts):
            swapped = self.swap(text, random.Random(f"{seed}:{epoch}:{i}"))
            variants.append(text if " ".join(swapped.split()) in held_out else swapped)
        return variants
