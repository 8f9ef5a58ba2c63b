"""The project's Definitions for more than one machine (deploy/README.md): the same assets, jobs and resources as
ohlora_assets/definitions.py, with the step executor and the training assets' Pipes client chosen by environment:

    OHLORA_EXECUTOR        multiprocess (default) | celery | k8s
    OHLORA_PIPES_CLIENT    subprocess (default) | k8s | docker   (used by runs with `launcher: pipes`)
    OHLORA_TRAINING_IMAGE  the image of deploy/Dockerfile, for the k8s and docker clients
    OHLORA_ARTIFACT_CLAIM  k8s: the ReadWriteMany PersistentVolumeClaim mounted at OHLORA_HOME in training pods
    OHLORA_K8S_NAMESPACE   k8s: the namespace of training pods (default `default`)
    OHLORA_TRAINING_GPUS   GPUs per training pod or container (default 1)

Set them alike on every machine (Celery workers and step pods rebuild the job from this file). Load it instead
of the module: `dagster dev -f deploy/definitions.py`, or `python_file: deploy/definitions.py`
in workspace.yaml. The executor's run config (broker URLs for celery) is deploy/celery.yaml.
"""

import os

import dagster as dg

from ohlora_assets import definitions as project  # the module: one Definitions object at module scope
from ohlora_assets.launchers import PIPES_CLIENT
from ohlora_assets.pipes_clients import docker_training_client, k8s_training_client, subprocess_training_client
from ohlora_assets.core.settings import SettingsError
from ohlora_assets.resources import setting


def executor() -> dg.ExecutorDefinition | None:
    chosen = os.environ.get("OHLORA_EXECUTOR", "multiprocess")
    if chosen == "celery":
        from dagster_celery import celery_executor

        return celery_executor
    if chosen == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured({"max_concurrent": 4})
    if chosen != "multiprocess":
        raise ValueError(f"OHLORA_EXECUTOR: expected multiprocess, celery or k8s, got {chosen!r}")
    return None


def _required(variable: str) -> str:
    """A variable the chosen Pipes client cannot do without, named when it is missing (not a bare KeyError)."""
    if not os.environ.get(variable):
        raise SettingsError(f"{variable} is not set: OHLORA_PIPES_CLIENT={os.environ['OHLORA_PIPES_CLIENT']} needs it "
                            "(see this file's docstring)")
    return os.environ[variable]


def pipes_client() -> dg.PipesClient:
    chosen = os.environ.get("OHLORA_PIPES_CLIENT", "subprocess")
    if chosen == "subprocess":
        return subprocess_training_client()

    image, root = _required("OHLORA_TRAINING_IMAGE"), setting("OHLORA_HOME")
    gpus = int(os.environ.get("OHLORA_TRAINING_GPUS", "1"))
    if chosen == "k8s":
        return k8s_training_client(image, root, _required("OHLORA_ARTIFACT_CLAIM"),
                                   os.environ.get("OHLORA_K8S_NAMESPACE", "default"), gpus)
    if chosen == "docker":
        return docker_training_client(image, root, gpus)
    raise ValueError(f"OHLORA_PIPES_CLIENT: expected subprocess, k8s or docker, got {chosen!r}")


defs = dg.Definitions(
    assets=project.defs.assets,
    asset_checks=project.defs.asset_checks,
    jobs=project.defs.jobs,
    schedules=project.defs.schedules,
    sensors=project.defs.sensors,
    resources={**project.defs.resources, PIPES_CLIENT: pipes_client()},
    executor=executor(),
)
