"""The one Definitions object of the project: `dg dev`, `dg launch`, `dagster dev` (workspace.yaml) load it."""

import dagster as dg

from ohlora_assets.resources import default_resources

# Configured (every bad OHLORA_* setting named at once) before the modules that read some of them as they import.
resources = default_resources()

from ohlora_assets import assets  # noqa: E402
from ohlora_assets.automation import JOBS, SCHEDULES, SENSORS, with_automation  # noqa: E402

defs = dg.Definitions(
    assets=with_automation(dg.load_assets_from_package_module(assets)),
    asset_checks=dg.load_asset_checks_from_package_module(assets),
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources=resources,
)
