"""Dagster's FilesystemIOManager, writing each output through the one atomic path (core/io.py).

The stock manager opens the target pickle with "wb" and writes in place: a run killed mid-write, or
an output that fails to pickle, leaves a truncated file where the last good output was, and the next
run that reads it fails. Here the pickle is built in memory and published with `atomic_write_bytes`
(one rename, mode 0o644 for a shared folder, no staging debris). A value that is gone when read names its asset.
"""

from __future__ import annotations

import pickle
from typing import Any

import dagster as dg
from dagster._core.storage.fs_io_manager import PickledObjectFilesystemIOManager

from ohlora_assets.core.io import atomic_write_bytes

PICKLE_PROTOCOL = 4  # Dagster's own choice for its pickles


class _AtomicPickles(PickledObjectFilesystemIOManager):
    def dump_to_path(self, context: dg.OutputContext, obj: Any, path) -> None:
        if getattr(path, "protocol", "") not in ("", "file", "local"):  # a remote store: the stock write
            super().dump_to_path(context, obj, path)
            return
        atomic_write_bytes(str(path), pickle.dumps(obj, PICKLE_PROTOCOL))

    def load_from_path(self, context: dg.InputContext, path) -> Any:
        try:
            return super().load_from_path(context, path)
        except FileNotFoundError:  # Dagster's own error names the input parameter, not the asset to materialize
            asset = context.asset_key.to_user_string() if context.has_asset_key else str(path)
            raise dg.Failure(f"no stored value of {asset} at {path}: materialize {asset} (the instance remembers "
                             "it, but the folder was emptied, or OHLORA_HOME is another folder now)") from None


class AtomicFilesystemIOManager(dg.FilesystemIOManager):
    """Drop-in for `dg.FilesystemIOManager(base_dir=...)`."""

    def create_io_manager(self, context: dg.InitResourceContext) -> PickledObjectFilesystemIOManager:
        return _AtomicPickles(base_dir=self.base_dir or context.instance.storage_directory())
