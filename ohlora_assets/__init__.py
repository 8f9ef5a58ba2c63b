"""ohlora-assets. Importing the package sets how OpenMP threads wait (core/device.py) before anything loads
torch, for every entry point: the Dagster definitions, the `ohlora` command, the Pipes training process."""

from ohlora_assets.core import device as _device  # noqa: F401
