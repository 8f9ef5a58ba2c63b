"""Metadata helpers shared by the asset modules: plots shown inline in the Dagster UI."""

import base64
from pathlib import Path

import dagster as dg

from ohlora_assets.core.io import atomic_write_bytes


def inline_png(png: bytes, alt: str) -> str:
    """Markdown that shows a PNG inline (the UI renders data URIs; no file server needed)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def saved_png(path: Path, png: bytes, alt: str) -> dg.MetadataValue:
    """Save the PNG atomically at `path` and show it inline, with the path beneath."""
    atomic_write_bytes(path, png)
    return dg.MetadataValue.md(f"{inline_png(png, alt)}\n\n`{path}`")
