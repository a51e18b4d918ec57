"""Follow-up questions in a chat without an LLM: hit@5 and whether the answer's lead is about the follow-up.

    .venv/bin/python scripts/followup_eval.py [--chunk-size 64] [--sets tests/rag/data/followups_mixed.jsonl ...]

The sample documents (data/sample) are ingested into a temporary store; every chat of each set is asked turn
by turn with the turns before it as history, the extractive answer included. Per kind of turn (first,
new-topic: a follow-up that stands alone on another subject, elliptical: one that leaves out what the chat
said before; the older set, tests/rag/data/followups.jsonl, marks no kinds: its follow-ups count as
elliptical): hit@5 (the expected passage, its source and a phrase of it, among the top 5 chunks) and lead (the
phrase in the answer's text before its first [n]).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from evaluation.metrics import answer_contains, answer_lead  # noqa: E402
from ingest.pipeline import Ingestor  # noqa: E402
from rag.pipeline import RagPipeline  # noqa: E402
from rag.settings import Settings  # noqa: E402

SETS = [REPO / "tests/rag/data/followups_mixed.jsonl", REPO / "tests/rag/data/followups.jsonl"]


def hit(result, turn: dict) -> bool:
    phrase = " ".join(turn["expected_text"].split())
    return any(c.source == turn["expected_source"] and phrase in " ".join(c.text.split()) for c in result.chunks[:5])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunk-size", type=int, default=64)
    ap.add_argument("--reranker", default=None, help="default: the settings' (none: no rerank)")
    ap.add_argument("--sets", nargs="*", type=Path, default=SETS)
    ap.add_argument("--show", action="store_true", help="print each follow-up's lead")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        extra = {"reranker": args.reranker} if args.reranker else {}
        settings = Settings(data_dir=Path(tmp), chunk_size=args.chunk_size, chunk_overlap=min(30, args.chunk_size // 8),
                            **extra)
        Ingestor(settings).ingest_paths([REPO / "data" / "sample"])
        pipeline = RagPipeline(settings)
        report = {}
        for path in args.sets:
            counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # turns, hit@5, lead
            for line in path.read_text().splitlines():
                if not line.strip():
                    continue
                history: list = []
                for n, turn in enumerate(json.loads(line)["turns"]):
                    kind = turn.get("kind", "first" if n == 0 else "elliptical")
                    result = pipeline.ask(turn["question"], history=history)
                    lead = answer_lead(result.answer)
                    row = counts[kind]
                    row[0] += 1
                    row[1] += hit(result, turn)
                    row[2] += answer_contains([turn["expected_text"]], lead)
                    if args.show:
                        ok = "ok " if answer_contains([turn["expected_text"]], lead) else "XX "
                        print(ok, kind[:3], turn["question"], "->", lead[:110], file=sys.stderr)
                    history.append(result)
            report[path.name] = {kind: {"turns": t, "hit@5": round(h / t, 3), "lead": round(ld / t, 3)}
                                 for kind, (t, h, ld) in sorted(counts.items())}
        print(json.dumps({"chunk_size": args.chunk_size, "reranker": settings.reranker, "sets": report}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
