"""Jobs and schedules over the asset graph."""

import dagster as dg

retrain_all = dg.define_asset_job("retrain_all", selection=dg.AssetSelection.all(), description="Every asset.")

JOBS = [retrain_all]
SCHEDULES: list[dg.ScheduleDefinition] = []
