"""`ohlora ethics check PROMPT --user ID [--answer A] [--model DIR] [--log FILE]`: the gate users run.

Prints one JSON object: the normalized prompt, the five scores, the decision (allow, warn, block,
or refused while a block is active), the sanctions logged this turn and the end of any block.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ohlora_assets.core.device import limit_torch_threads


def check(args: argparse.Namespace) -> int:
    from ohlora_assets.core.ethics.gate import check_turn
    from ohlora_assets.core.ethics.sanctions import SanctionLog
    from ohlora_assets.core.ethics.scoring import EthicsScorer
    from ohlora_assets.resources import ArtifactStore, ModelProfile

    limit_torch_threads()
    store = ArtifactStore.from_env()
    model_dir = Path(args.model) if args.model else store.model_dir("ethics_sbert_model")
    log_path = Path(args.log) if args.log else store.path("ethics", "sanctions.sqlite")
    if not (model_dir / "modules.json").is_file():
        print(
            json.dumps({"error": f"no sentence-transformers model in {model_dir}: materialize ethics_sbert_model "
                        "(dagster job ethics_only) or pass --model DIR"}, ensure_ascii=False),
            file=sys.stderr,
        )
        return 2
    scorer = EthicsScorer.load(model_dir, device="cpu", trust_remote_code=ModelProfile.from_env().trust_remote_code)
    decision = check_turn(scorer, SanctionLog(log_path), args.user, args.prompt, args.answer or "")
    print(json.dumps(decision.to_json(), ensure_ascii=False, indent=2))
    return 0
