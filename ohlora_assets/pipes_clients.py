"""Pipes clients that run the training entry point on a GPU machine: a Kubernetes pod or a Docker container.

Each is the `pipes_client` resource of deploy/README.md ("GPU training elsewhere"): the training assets call
`client.run(context=..., command=..., extras=...)` (ohlora_assets/launchers.py), and these clients add what the
platform needs: the image (deploy/Dockerfile), one GPU, and the shared artifact folder mounted at the path the
orchestrator's OHLORA_HOME has, so that the paths in the Pipes extras mean the same file on both sides.
dagster-k8s and dagster-docker are imported only when a client is built (neither is a dependency here).
"""

from pathlib import Path
from typing import Any

ARTIFACT_VOLUME = "ohlora-artifacts"


def k8s_training_pod_spec(artifact_root: str, artifact_claim: str, gpus: int = 1) -> dict[str, Any]:
    """A pod spec with `gpus` NVIDIA GPUs and the artifact PersistentVolumeClaim mounted at `artifact_root`."""
    return {
        "containers": [{
            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
            "volume_mounts": [{"name": ARTIFACT_VOLUME, "mount_path": artifact_root}],
            "env": [{"name": "OHLORA_HOME", "value": artifact_root}],
        }],
        "volumes": [{"name": ARTIFACT_VOLUME, "persistent_volume_claim": {"claim_name": artifact_claim}}],
    }


def k8s_training_client(
    image: str, artifact_root: str, artifact_claim: str, namespace: str = "default", gpus: int = 1, **client_args: Any
):
    """A `dagster_k8s.PipesK8sClient` that runs each training in a pod of `image` with `gpus` GPUs and the
    PersistentVolumeClaim `artifact_claim` (ReadWriteMany) mounted at `artifact_root` (= OHLORA_HOME)."""
    from dagster_k8s import PipesK8sClient

    class TrainingPodClient(PipesK8sClient):
        def run(self, *, context, command, extras=None, **run_args):
            return super().run(
                context=context, command=command, extras=extras, image=image, namespace=namespace,
                base_pod_spec=k8s_training_pod_spec(artifact_root, artifact_claim, gpus), **run_args,
            )

    return TrainingPodClient(**client_args)


def docker_training_container_args(artifact_root: str, gpus: int = 1) -> dict[str, Any]:
    """`docker.containers.create` arguments: `gpus` NVIDIA GPUs (-1: all) and `artifact_root` bind-mounted at the
    same path (the host folder must be the orchestrator's OHLORA_HOME, or a mount of the same storage)."""
    from docker.types import DeviceRequest

    root = str(Path(artifact_root).resolve())
    return {
        "volumes": {root: {"bind": root, "mode": "rw"}},
        "device_requests": [DeviceRequest(count=gpus, capabilities=[["gpu"]])],
        "environment": {"OHLORA_HOME": root},
    }


def docker_training_client(image: str, artifact_root: str, gpus: int = 1, **client_args: Any):
    """A `dagster_docker.PipesDockerClient` that runs each training in a container of `image` with `gpus` GPUs
    and the artifact folder mounted at its own path."""
    from dagster_docker import PipesDockerClient

    class TrainingContainerClient(PipesDockerClient):
        def run(self, *, context, command, extras=None, **run_args):
            return super().run(
                context=context, command=command, extras=extras, image=image,
                container_kwargs=docker_training_container_args(artifact_root, gpus), **run_args,
            )

    return TrainingContainerClient(**client_args)
