"""The error for an environment setting (`OHLORA_*`) that holds a value the project cannot use.

It lives in core, beside no Dagster import, so that core code reading a setting at run time (device, threads)
raises the same error the definitions raise at load time, and every `ohlora` command answers it with one line.
"""


class SettingsError(ValueError):
    """An environment variable the project reads holds a value it cannot use; the message names it."""
