"""Asset metadata shared by the asset modules: tables and inline plots for the Dagster UI.

The rendering itself (Markdown, matplotlib) is core/render.py; this module turns it into MetadataValues.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from ohlora_assets.core.data_issues import DataIssue, by_kind, more_rows
from ohlora_assets.core.io import atomic_write_bytes
from ohlora_assets.core.render import markdown_table, png_with_path, typed_table


def md_table(rows: pd.DataFrame | Sequence[dict[str, Any]], digits: int = 4) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_table(rows, digits))


def table(rows: pd.DataFrame | Sequence[dict[str, Any]], digits: int = 4) -> dg.MetadataValue:
    """A table the UI sorts and filters, with a typed schema; floats rounded for reading."""
    records, columns = typed_table(rows, digits)
    return dg.MetadataValue.table(
        [dg.TableRecord(r) for r in records], dg.TableSchema(columns=[dg.TableColumn(n, t) for n, t in columns])
    )


def number(value: float | None, digits: int = 4) -> dg.MetadataValue | None:
    """A float for reading (`digits` significant digits); None stays None."""
    return None if value is None else dg.MetadataValue.float(float(f"{value:.{digits}g}"))


def png_value(png: bytes, alt: str, path: Path) -> dg.MetadataValue:
    """The PNG inline, with the path it is saved at beneath."""
    return dg.MetadataValue.md(png_with_path(png, alt, path))


def saved_png(path: Path, png: bytes, alt: str) -> dg.MetadataValue:
    """Save the PNG atomically at `path` and show it inline, with the path beneath."""
    atomic_write_bytes(path, png)
    return png_value(png, alt, path)


def metric_metadata(metrics: dict[str, float | None]) -> dict[str, dg.MetadataValue]:
    """Metric values as floats for reading; a metric that does not apply (None) is left out."""
    return {key: number(value) for key, value in metrics.items() if value is not None}


def caps_metadata(caps) -> dg.MetadataValue:
    """The ceilings a run's budget had (core/recipes.Caps), or that it had none."""
    if caps is None:
        return dg.MetadataValue.md("none: the recipes as they are")
    return md_table([{"ceiling": key, "value": value} for key, value in vars(caps).items() if value is not None])


def issues_table(issues: list[DataIssue]) -> dg.MetadataValue:
    """Input-file issues, at most ISSUES_SHOWN_PER_KIND of each kind and then a count of the rest (`by_kind`)."""
    row = "row (group)" if any(i.unit == "group" for i in issues) else "row"
    records = []
    for shown, rest in by_kind(issues):
        records += [{"file": i.file, row: "" if i.row is None else str(i.row), "column": i.column or "",
                     "problem": i.message, "fix": i.fix} for i in shown]
        if rest:
            records.append({"file": rest[0].file, row: more_rows(rest), "column": rest[0].column or "",
                            "problem": "the same kind of problem", "fix": rest[0].fix})
    return md_table(records)
