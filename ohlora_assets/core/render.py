"""Rendering shared by reports and asset metadata: Markdown tables and matplotlib figures as PNG bytes."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd


# A cell's own `|` would open a column and its line break a row: prompts and model answers hold both.
_MARKDOWN_CELL = str.maketrans({"|": "\\|", "\r": " \u23ce ", "\n": " \u23ce "})


def markdown_cell(value: Any, digits: int = 4) -> Any:
    """A value as one Markdown table cell: floats to `digits` significant digits, text with `|` escaped and
    line breaks shown as ⏎."""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return value.replace("\r\n", "\n").translate(_MARKDOWN_CELL) if isinstance(value, str) else value


def markdown_table(rows: pd.DataFrame | Sequence[dict[str, Any]], digits: int = 4) -> str:
    """A Markdown table, one cell per value whatever its text (`markdown_cell`); floats are formatted cell
    by cell (a table-wide format would also print integer columns such as epoch numbers as floats)."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    return frame.map(lambda v: markdown_cell(v, digits)).rename(columns=lambda c: markdown_cell(str(c))).to_markdown(
        index=False
    )


def _cell(value: Any, digits: int) -> Any:
    """A cell a table viewer can sort: plain numbers (floats to `digits` significant digits), text otherwise."""
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else float(f"{value:.{digits}g}")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def _column_type(types: set[type]) -> str:
    if types == {bool}:
        return "bool"
    if types == {int}:
        return "int"
    return "float" if types and types <= {int, float} else "string"


def typed_table(
    rows: pd.DataFrame | Sequence[dict[str, Any]], digits: int = 4
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """(records, [(column, type)]) of a table for a sortable viewer (the Dagster UI, in process or over Pipes):
    plain cells, floats rounded for reading, each column typed bool, int, float or string."""
    records = [
        {str(k): _cell(v, digits) for k, v in row.items()}
        for row in (rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows)
    ]
    names = list(records[0]) if records else [str(c) for c in getattr(rows, "columns", [])]
    return records, [(n, _column_type({type(r[n]) for r in records if r.get(n) is not None})) for n in names]


def subplots(*args, **kwargs):
    """matplotlib's `subplots` on the headless Agg backend (imported here: matplotlib is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def figure_png(figure) -> bytes:
    """The figure as PNG bytes; the figure is closed (pyplot keeps every open figure alive)."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def loss_curve_png(curves: dict[str, tuple[Sequence[float], Sequence[float]]], xlabel: str) -> bytes:
    """Loss against `xlabel` (step or epoch), one line per curve."""
    figure, axes = subplots(figsize=(6, 3.5), dpi=100)
    for label, (xs, ys) in curves.items():
        axes.plot(xs, ys, marker="o", markersize=3, label=label)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("loss (nats/token)")
    axes.grid(alpha=0.3)
    axes.legend()
    return figure_png(figure)


def inline_png(png: bytes, alt: str) -> str:
    """Markdown that shows a PNG inline (the Dagster UI renders data URIs; no file server needed)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def png_with_path(png: bytes, alt: str, path) -> str:
    """The PNG inline, with the path it is saved at beneath."""
    return f"{inline_png(png, alt)}\n\n`{path}`"
