"""The one Definitions object of the project: `dg dev`, `dg launch`, `dagster dev` (workspace.yaml) load it."""

import dagster as dg

from ohlora_assets import assets
from ohlora_assets.automation import JOBS, SCHEDULES, SENSORS, with_automation
from ohlora_assets.resources import default_resources

defs = dg.Definitions(
    assets=with_automation(dg.load_assets_from_package_module(assets)),
    asset_checks=dg.load_asset_checks_from_package_module(assets),
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources=default_resources(),
)
