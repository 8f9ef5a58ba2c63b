"""Pipes clients that run the training entry point: a local subprocess, a Kubernetes pod or a Docker container.

Each is the `pipes_client` resource of deploy/README.md ("GPU training elsewhere"): the training assets call
`client.run(context=..., command=..., extras=...)` (ohlora_assets/launchers.py). The subprocess client is the
default; it reads the messages through a file, whole lines only. The Kubernetes and Docker clients add what the
platform needs: the image (deploy/Dockerfile), one GPU, and the shared artifact folder mounted at the path the
orchestrator's OHLORA_HOME has, so that the paths in the Pipes extras mean the same file on both sides.
dagster-k8s and dagster-docker are imported only when a client is built (neither is a dependency here).
"""

import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_pipes import PipesDefaultMessageWriter

ARTIFACT_VOLUME = "ohlora-artifacts"
MESSAGES_FILE = "messages"


def whole_lines(path: str, session_closed: Callable[[], bool]) -> Iterator[str]:
    """The lines of a file another process appends to, each once it is whole, until `session_closed()` is true and
    the file is read to its end. A line left without its newline then is yielded as it is (the writer died in it)."""
    pending = bytearray()  # the line being written; only new bytes are searched, so a long line costs its length
    with open(path, "rb") as stream:
        while True:
            closed = session_closed()  # asked before reading, so that the last read sees everything written
            chunk = stream.read(1 << 16)
            if chunk:
                start = 0
                while (end := chunk.find(b"\n", start)) != -1:
                    pending += chunk[start:end]
                    if pending.strip():  # bytes that are no UTF-8 fail as that one message, not the reader
                        yield pending.decode("utf-8", errors="replace")
                    pending.clear()
                    start = end + 1
                pending += chunk[start:]
            elif closed:
                if pending.strip():
                    yield pending.decode("utf-8", errors="replace")
                return
            else:
                time.sleep(0.01)


class WholeLineMessageReader(dg.PipesMessageReader):
    """Dagster's temporary-file message reader, handing on only whole messages.

    Dagster's own tails the file with `readline()`, which returns the part of a line written so far, and Linux
    shows a large write to a concurrent reader a page at a time. A message over 4 KiB (a materialization with
    its loss-curve PNG) could be read cut in two: the reader thread died on the JSON, the materialization was
    lost, and the step still succeeded with an implicit, empty one.
    """

    @contextmanager
    def read_messages(self, handler) -> Iterator[dict[str, Any]]:
        session_closed = threading.Event()
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, MESSAGES_FILE)
            open(path, "wb").close()
            reader = threading.Thread(target=self._read, args=(path, handler, session_closed.is_set), daemon=True)
            reader.start()
            try:
                yield {PipesDefaultMessageWriter.FILE_PATH_KEY: path}
            finally:
                session_closed.set()
                reader.join()

    @staticmethod
    def _read(path: str, handler, session_closed: Callable[[], bool]) -> None:
        try:
            for line in whole_lines(path, session_closed):
                try:
                    handler.handle_message(json.loads(line))
                except Exception:  # one bad message (or a last one cut by a kill) must not hide those after it
                    handler.report_pipes_framework_exception(
                        f"{WholeLineMessageReader.__name__}, which dropped the message", sys.exc_info())
        except Exception:
            handler.report_pipes_framework_exception(WholeLineMessageReader.__name__, sys.exc_info())
            raise

    def no_messages_debug_text(self) -> str:
        return f"Attempted to read messages from a temporary file ({self.__class__.__name__})."


def subprocess_training_client(env: dict[str, str] | None = None, cwd: str | None = None) -> dg.PipesSubprocessClient:
    """The default `pipes_client`: the entry point in a subprocess on this machine, its messages read whole.
    Its output goes to the step's (Dagster's `forward_stdio=False` would pipe it unread, and a training that
    prints a lot would block)."""
    return dg.PipesSubprocessClient(env=env, cwd=cwd, message_reader=WholeLineMessageReader())


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
