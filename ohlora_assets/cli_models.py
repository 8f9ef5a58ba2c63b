"""`ohlora models list|promote|rollback`: see and move what serves (core/registry.py has the lifecycle).

    ohlora models list [ASSET] [--json]     versions side by side with their key metrics; * marks the serving one
    ohlora models promote ASSET VERSION     manual override (recorded with reason "manual"), gate or no gate
    ohlora models rollback ASSET            back to the version that served before

The artifact folder is `--home`, else the pipeline's (resources.ArtifactStore: OHLORA_HOME or its default). Exit codes:
0 done, 1 refused (unknown asset or version, nothing to roll back to), 2 usage (argparse).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

def artifact_home(home: str | None) -> Path:
    from ohlora_assets.resources import ArtifactStore

    return Path(home) if home else Path(ArtifactStore.from_env().root)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `models` and its subcommands to the `ohlora` parser; each sets `handler` (args -> exit code)."""
    models = subparsers.add_parser("models", help="model versions: list, promote, roll back")
    models.add_argument("--home", help="artifact folder (default: the pipeline's, OHLORA_HOME)")
    commands = models.add_subparsers(dest="models_command", required=True)

    listing = commands.add_parser("list", help="versions with key metrics; * marks the serving one")
    listing.add_argument("asset", nargs="?", help="one model asset (default: every one)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=list_versions)

    promote = commands.add_parser("promote", help="serve VERSION now (manual override, recorded)")
    promote.add_argument("asset")
    promote.add_argument("version", help="version id or a unique prefix of one")
    promote.set_defaults(handler=promote_version)

    rollback = commands.add_parser("rollback", help="serve the version that served before")
    rollback.add_argument("asset")
    rollback.set_defaults(handler=rollback_version)


def _registry(args: argparse.Namespace):
    from ohlora_assets.core.registry import ModelRegistry, registries

    registry = ModelRegistry(artifact_home(args.home) / "models", args.asset)
    if not registry.root.is_dir():
        known = ", ".join(r.name for r in registries(registry.root.parent)) or "none yet"
        print(f"no model asset {args.asset!r} under {registry.root.parent} (there: {known}); a model appears here "
              "after its first training", file=sys.stderr)
        return None
    return registry


def _describe(registry) -> dict:
    serving = registry.serving_label()
    return {
        "asset": registry.name,
        "serving": serving,
        "versions": [{**v.to_json(), "serving": v.version == serving} for v in registry.versions()],
    }


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _table(registry) -> str:
    from ohlora_assets.core.promotion import versions_table

    title = f"{registry.name}: serving {registry.serving_label() or 'nothing'}"
    rows = versions_table(registry)
    if not rows:
        return title
    cells = [["" if key == "serving" else key for key in rows[0]]] + [[_cell(v) for v in row.values()] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join([title] + ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells])


def list_versions(args: argparse.Namespace) -> int:
    from ohlora_assets.core.registry import RegistryError, registries

    if args.asset:
        registry = _registry(args)
        if registry is None:
            return 1
        found = [registry]
    else:
        found = registries(artifact_home(args.home) / "models")
    try:  # a damaged pointer or version record is named, as the gate and the chat name it
        text = (json.dumps([_describe(r) for r in found], ensure_ascii=False, indent=2) if args.json
                else "\n\n".join(_table(r) for r in found) or f"no models yet under {artifact_home(args.home)}")
    except RegistryError as error:
        print(error, file=sys.stderr)
        return 1
    print(text)
    return 0


def _move_pointer(args: argparse.Namespace, move, done: str) -> int:
    """Run `move(registry)` (a promote or a rollback) and say which version serves now; 1 on a registry error."""
    from ohlora_assets.core.registry import RegistryError

    registry = _registry(args)
    if registry is None:
        return 1
    try:
        version = move(registry)
    except RegistryError as error:
        print(error, file=sys.stderr)
        return 1
    except OSError as error:  # a read-only or full disk: the pointer was not moved
        print(f"{registry.name}: the serving pointer was not moved: {error.strerror}: {error.filename}", file=sys.stderr)
        return 1
    print(f"{registry.name}: {done}{version.version} serves")
    return 0


def promote_version(args: argparse.Namespace) -> int:
    return _move_pointer(args, lambda registry: registry.promote(args.version, "manual"), "")


def rollback_version(args: argparse.Namespace) -> int:
    return _move_pointer(args, lambda registry: registry.rollback(), "rolled back, ")
