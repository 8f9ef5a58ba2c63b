"""The model registry: immutable versions, one-rename promotion, rollback, pruning, and kills at every step.

The artifacts are real tiny PEFT adapters (safetensors) on a real tiny Llama, loaded back with plain PEFT.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ohlora_assets.core.io import directory_hash
from ohlora_assets.core.crash_safety import CHECKPOINTS, KILL_ENV
from ohlora_assets.core.registry import LEGACY, ModelRegistry, RegistryError, registries, remove_orphaned_reports

PROJECT = Path(__file__).resolve().parents[2]
NAME = "adapter_output_message"


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> list[Path]:
    """Three PEFT adapter directories with different weights on one tiny random Llama."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("adapters")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)
    LlamaForCausalLM(config).save_pretrained(root / "base")
    directories = []
    for seed in range(3):
        torch.manual_seed(seed + 1)
        lora = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
        model = get_peft_model(LlamaForCausalLM.from_pretrained(root / "base"), lora)
        model.save_pretrained(root / f"adapter{seed}")
        directories.append(root / f"adapter{seed}")
    return directories


def _write(registry: ModelRegistry, source: Path, **metrics) -> str:
    with registry.write_version(metrics=metrics, notes=f"from {source.name}") as pending:
        for file in source.iterdir():
            shutil.copy(file, pending.path / file.name)
    return pending.version


def _numbered_versions(registry: ModelRegistry, count: int) -> list[str]:
    """`count` tiny versions with ids 0000000000000001, 0000000000000002, ..., oldest first."""
    ids = []
    for i in range(count):
        with registry.write_version(data_version=f"{i + 1:016x}") as pending:
            (pending.path / "weights.txt").write_text(str(i))
        ids.append(pending.version)
    return ids


def _assert_serving_loads(registry: ModelRegistry) -> str:
    """The serving adapter loads with plain PEFT, runs, and holds exactly the weights its id names."""
    from peft import AutoPeftModelForCausalLM

    serving = registry.serving()
    assert serving is not None
    assert directory_hash(serving.path)[:16] == serving.version
    model = AutoPeftModelForCausalLM.from_pretrained(str(serving.path))
    with torch.no_grad():
        logits = model(torch.tensor([[1, 2, 3]])).logits
    assert torch.isfinite(logits).all()
    return serving.version


def test_a_version_is_written_once_with_public_permissions_and_its_description(tmp_path, adapters):
    registry = ModelRegistry(tmp_path, NAME)
    version = _write(registry, adapters[0], final_train_loss=1.5)
    assert version == directory_hash(adapters[0])[:16]
    described = registry.get(version)
    assert described.metrics == {"final_train_loss": 1.5} and described.notes == "from adapter0"
    assert described.data_version == directory_hash(adapters[0])
    assert (described.path.stat().st_mode & 0o777) == 0o755
    assert all((p.stat().st_mode & 0o777) == 0o644 for p in described.path.iterdir())
    written_before = (described.path / "version.json").read_text()

    with registry.write_version(metrics={"final_train_loss": 9.0}) as again:
        for file in adapters[0].iterdir():
            shutil.copy(file, again.path / file.name)
    assert again.version == version and not again.created
    assert (described.path / "version.json").read_text() == written_before
    assert [p.name for p in tmp_path.joinpath(NAME).iterdir() if p.name.startswith(".")] == []


def test_a_failed_write_leaves_nothing(tmp_path, adapters):
    registry = ModelRegistry(tmp_path, NAME)
    with pytest.raises(RuntimeError, match="training diverged"):
        with registry.write_version() as pending:
            shutil.copy(adapters[0] / "adapter_config.json", pending.path)
            raise RuntimeError("training diverged")
    assert registry.versions() == [] and list(registry.root.iterdir()) == [registry.versions_dir]


def test_promote_rollback_and_history(tmp_path, adapters):
    registry = ModelRegistry(tmp_path, NAME)
    first, second, third = (_write(registry, a) for a in adapters)
    assert registry.serving() is None and registry.serving_path() is None
    with pytest.raises(RegistryError, match="no earlier serving version"):
        registry.rollback()
    with pytest.raises(RegistryError, match="no version 'ffff'"):
        registry.promote("ffff", "manual")

    registry.promote(first, "first version")
    registry.promote(second[:6], "checks passed")  # a unique prefix names a version
    registry.promote(third, "manual")
    assert registry.serving().version == third and registry.state()["previous"] == second
    assert registry.rollback().version == second
    assert registry.rollback().version == first
    with pytest.raises(RegistryError):
        registry.rollback()
    assert registry.serving_path() == registry.versions_dir / first
    reasons = [(e["version"], e["reason"]) for e in registry.state()["history"]]
    assert reasons == [
        (first, "first version"), (second, "checks passed"), (third, "manual"),
        (second, f"rollback from {third}"), (first, f"rollback from {second}"),
    ]


@pytest.mark.parametrize(
    "pointer",
    ['{"version": ', "", "{}", "[]", '{"version": null, "stack": [], "history": []}',
     '{"version": "../../../elsewhere", "stack": [], "history": []}', '{"version": "ffff", "stack": [], "history": []}'],
)
def test_a_damaged_or_hand_edited_serving_pointer_is_named_not_followed(tmp_path, adapters, pointer):
    registry = ModelRegistry(tmp_path, NAME)
    registry.promote(_write(registry, adapters[0]), "first")
    registry.pointer.write_text(pointer, encoding="utf-8")
    first = registry.versions()[0].version
    for read in (registry.serving_path, registry.serving_label, registry.serving):
        # the file, and the command that repairs it with the ids it takes
        with pytest.raises(RegistryError, match=rf"serving.json.*ohlora models promote {NAME} ID \(versions: {first}\)"):
            read()
    # promoting is the repair: the unreadable pointer is kept aside, hidden
    second = _write(registry, adapters[1])
    registry.promote(second, "repaired by hand")
    assert registry.serving_label() == second and registry.serving_path() == registry.versions_dir / second
    assert registry.legacy_path() is None


def test_a_pointer_that_is_a_directory_is_named_not_taken_for_no_pointer(tmp_path, adapters):
    registry = ModelRegistry(tmp_path, NAME)
    _write(registry, adapters[0])
    registry.pointer.mkdir(parents=True)
    with pytest.raises(RegistryError, match="serving.json: unreadable"):
        registry.serving_path()


def test_serving_needs_only_the_versions_folder_not_its_evaluation(tmp_path, adapters):
    registry = ModelRegistry(tmp_path, NAME)
    version = _write(registry, adapters[0])
    registry.record_metrics(version, {"accuracy": 0.9})
    registry.promote(version, "first")
    (registry.root / "evaluations" / f"{version}.json").write_text("oops", encoding="utf-8")
    assert registry.serving_path() == registry.versions_dir / version and registry.serving_label() == version
    with pytest.raises(RegistryError, match=f"{version}.json: unreadable"):
        registry.serving()  # the figures themselves are named when they are read
    (registry.versions_dir / version / "version.json").write_text("{}", encoding="utf-8")
    with pytest.raises(RegistryError, match="missing created_at, data_version"):
        registry.get(version)


def test_metrics_measured_later_are_kept_beside_the_immutable_version(tmp_path, adapters):
    registry = ModelRegistry(tmp_path, NAME)
    version = _write(registry, adapters[0], final_train_loss=1.5)
    before = (registry.versions_dir / version / "version.json").read_bytes()
    registry.record_metrics(version, {"give_up_rate": 0.1})
    registry.record_metrics(version, {"copied_answer_rate": 0.0})
    assert registry.get(version).metrics == {"final_train_loss": 1.5, "give_up_rate": 0.1, "copied_answer_rate": 0.0}
    assert (registry.versions_dir / version / "version.json").read_bytes() == before


def test_prune_keeps_serving_rollback_target_protected_and_newest(tmp_path):
    registry = ModelRegistry(tmp_path, "ethics_sbert_model")
    ids = []
    for i in range(8):
        with registry.write_version(data_version=f"{i:016x}") as pending:
            (pending.path / "weights.txt").write_text(str(i))
        ids.append(pending.version)
    registry.promote(ids[1], "a")
    registry.promote(ids[2], "b")
    deleted = registry.prune(keep=2, protected={ids[0]})
    assert sorted(deleted) == sorted([ids[3], ids[4], ids[5]])
    assert [v.version for v in registry.versions()] == [ids[0], ids[1], ids[2], ids[6], ids[7]]
    assert registry.rollback().version == ids[1]


def test_legacy_model_serves_until_a_version_is_promoted_then_prune_removes_it(tmp_path, adapters):
    legacy = tmp_path / NAME
    shutil.copytree(adapters[0], legacy)
    registry = ModelRegistry(tmp_path, NAME)
    assert registry.serving_path() == legacy and registry.serving_label() == LEGACY
    assert [r.name for r in registries(tmp_path)] == [NAME]

    version = _write(registry, adapters[1])
    assert registry.serving_path() == legacy  # written is not promoted
    registry.promote(version, "first version")
    assert registry.serving_label() == version
    registry.prune()
    assert registry.legacy_path() is None
    assert sorted(p.name for p in legacy.iterdir()) == [".lock", "serving.json", "versions"]
    _assert_serving_loads(registry)


def test_debris_of_dead_writers_is_removed_and_that_of_live_ones_kept(tmp_path, adapters):
    registry = ModelRegistry(tmp_path, NAME)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid, live_pid = int(dead.stdout), os.getppid()
    registry.root.mkdir()
    names = [f".staging-{dead_pid}-a", f"..staging-{dead_pid}-b.tmp-c", f".trash-{dead_pid}-d", f".serving.json.tmp-{dead_pid}",
             f".staging-{live_pid}-e"]
    for name in names[:-2]:
        (registry.root / name).mkdir()
    (registry.root / names[-2]).write_text("{}")
    (registry.root / names[-1]).mkdir()
    _write(registry, adapters[0])
    assert sorted(p.name for p in registry.root.iterdir()) == [f".staging-{live_pid}-e", "versions"]


def test_debris_of_another_machine_sharing_the_folder_is_kept_until_a_day_old(tmp_path, adapters):
    """Another machine's pids cannot be seen from here: its staging directory may be a live writer's."""
    registry = ModelRegistry(tmp_path, NAME)
    registry.root.mkdir()
    live, stale = registry.root / ".staging-4242~0badc0de-a", registry.root / ".trash-4242~0badc0de-b"
    live.mkdir()
    stale.mkdir()
    day_and_a_bit = time.time() - 25 * 3600
    os.utime(stale, (day_and_a_bit, day_and_a_bit))
    _write(registry, adapters[0])
    assert sorted(p.name for p in registry.root.iterdir()) == [live.name, "versions"]


def test_concurrent_promotions_queue_on_the_lock_and_none_is_lost(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    registry = ModelRegistry(tmp_path, NAME)
    ids = _numbered_versions(registry, 8)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda version: ModelRegistry(tmp_path, NAME).promote(version, "race"), ids))
    history = registry.state()["history"]
    assert sorted(entry["version"] for entry in history) == sorted(ids)
    assert [entry["previous"] for entry in history[1:]] == [entry["version"] for entry in history[:-1]]


def test_checks_recording_at_once_keep_every_figure(tmp_path):
    """Two processes merge figures into one evaluation record: neither writes back a record without the other's."""
    registry = ModelRegistry(tmp_path, NAME)
    with registry.write_version() as pending:
        (pending.path / "weights.txt").write_text("w")
    script = (
        "import sys; from pathlib import Path; from ohlora_assets.core.registry import ModelRegistry\n"
        "registry = ModelRegistry(Path(sys.argv[1]), sys.argv[2])\n"
        "for i in range(150): registry.record_metrics(sys.argv[3], {f'{sys.argv[4]}{i}': i})\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), NAME, pending.version, prefix])
               for prefix in ("a", "b")]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    assert len(registry.get(pending.version).metrics) == 300


def test_a_hand_edited_version_record_is_named_and_prune_leaves_it_alone(tmp_path):
    registry = ModelRegistry(tmp_path, NAME)
    ids = _numbered_versions(registry, 3)
    record = registry.versions_dir / ids[0] / "version.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "created_at": 1700000000}))
    registry.promote(ids[2], "checks passed")
    with pytest.raises(RegistryError, match=f"{record}: not a version record"):
        registry.versions()
    assert registry.prune(keep=1) == [ids[1]]  # no TypeError after the pointer moved; the edited one stays
    assert (registry.versions_dir / ids[0]).is_dir()


def test_a_version_folder_whose_description_was_deleted_is_replaced_by_the_next_write(tmp_path, adapters):
    registry = ModelRegistry(tmp_path, NAME)
    version = _write(registry, adapters[0])
    (registry.versions_dir / version / "version.json").unlink()
    assert registry.versions() == []  # not a version any more
    assert _write(registry, adapters[0]) == version  # the same weights again: written, not "directory not empty"
    assert registry.get(version).path == registry.versions_dir / version


# --- kills ----------------------------------------------------------------------------------

# Writes adapter B file by file (a kill between files: "write:saving"), promotes it, then prunes.
LIFECYCLE = """
import shutil, sys
from pathlib import Path
from ohlora_assets.core.crash_safety import checkpoint
from ohlora_assets.core.registry import ModelRegistry
registry = ModelRegistry(Path(sys.argv[1]), sys.argv[2])
with registry.write_version(notes="candidate") as pending:
    for file in sorted(Path(sys.argv[3]).iterdir()):
        shutil.copy(file, pending.path / file.name)
        checkpoint("write:saving")
registry.promote(pending.version, "checks passed")
registry.prune(keep=1)
"""


@pytest.mark.parametrize("step", ["write:saving", *CHECKPOINTS])
def test_a_kill_at_any_step_leaves_a_loadable_serving_model_and_the_next_run_cleans_up(tmp_path, adapters, step):
    registry = ModelRegistry(tmp_path, NAME)
    with registry.write_version(data_version="0" * 64) as old:  # an older version for prune to delete
        (old.path / "weights.txt").write_text("old")
    serving_before = _write(registry, adapters[0])
    registry.promote(serving_before, "first version")
    candidate = directory_hash(adapters[1])[:16]

    env = {**os.environ, KILL_ENV: step, "PYTHONPATH": str(PROJECT)}
    process = subprocess.run([sys.executable, "-c", LIFECYCLE, str(tmp_path), NAME, str(adapters[1])],
                             env=env, capture_output=True, text=True, timeout=120)
    assert process.returncode == -9, process.stderr

    served = _assert_serving_loads(registry)
    assert served == (candidate if step in ("promote:replaced", "prune:trashed", "prune:deleted") else serving_before)
    debris = {p.name.split("-")[0] for p in registry.root.iterdir() if p.name.startswith(".") and p.name != ".lock"}
    expected = {"write:saving": {".staging"}, "write:staged": {".staging"}, "write:described": {".staging"},
                "promote:pointer-written": {".serving.json.tmp"}, "prune:trashed": {".trash"}}
    assert debris == expected.get(step, set())

    registry.promote(_write(registry, adapters[2]), "checks passed")
    registry.prune(keep=1)
    assert _assert_serving_loads(registry) == directory_hash(adapters[2])[:16]
    assert sorted(p.name for p in registry.root.iterdir()) == [".lock", "serving.json", "versions"]


def test_the_report_folders_of_versions_no_registry_holds_go(tmp_path):
    """Those of versions just pruned, and those a run killed between its prune and its sweep left behind."""
    reports, models = tmp_path / "reports", tmp_path / "models"
    held, pruned, left_by_a_kill = "a" * 16, "b" * 16, "c" * 16
    (models / "adapter_memory" / "versions" / held).mkdir(parents=True)
    (models / "base_models" / "versions").mkdir(parents=True)
    folders = [("memory_inference_samples", held), ("adapter_memory", held), ("memory_inference_samples", pruned),
               ("adapter_memory", pruned), ("ethics_report", left_by_a_kill), ("lora_rank_experiment", "notes")]
    for asset, name in folders:
        (reports / asset / name).mkdir(parents=True)
        (reports / asset / name / "samples.parquet").write_bytes(b"x")
    (reports / "rag_concept_experiment").mkdir()
    (reports / "rag_concept_experiment" / "report.md").write_bytes(b"x")  # a report of files, not version folders

    removed = remove_orphaned_reports(reports, models)
    assert sorted(p.relative_to(reports).as_posix() for p in removed) == [
        f"adapter_memory/{pruned}", f"ethics_report/{left_by_a_kill}", f"memory_inference_samples/{pruned}",
    ]
    assert sorted(p.relative_to(reports).as_posix() for p in reports.rglob("*") if p.is_file()) == [
        f"adapter_memory/{held}/samples.parquet", "lora_rank_experiment/notes/samples.parquet",
        f"memory_inference_samples/{held}/samples.parquet", "rag_concept_experiment/report.md",
    ]
    assert remove_orphaned_reports(reports, models) == []
