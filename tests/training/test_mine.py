"""`rerank-rag reranker mine`: negatives from the app's own first stage over a real store, the split kept, the
mined file read back by training; and the weights' round trip to a lent GPU machine (scripts/device_weights.py)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.datasets import load_dataset
from rag.settings import Settings
from tests.training.test_training import PAIRS, TOPICS, predict, tiny_config, write_beir
from training.mine import held_out, load_mined, mine_dataset, save_mined
from training.train import train

REPO = Path(__file__).resolve().parents[2]


def test_held_out_queries_take_the_first_judged_and_every_question_on_their_passages(tmp_path: Path) -> None:
    data = write_beir(tmp_path / "tiny")
    with (data / "queries.jsonl").open("a") as q, (data / "qrels.tsv").open("a") as r:
        q.write(json.dumps({"id": "q0-reworded", "text": "On which island does Mount Etna stand?"}) + "\n")
        r.write("q0-reworded\td0\t1\n")
    ds = load_dataset(data)
    assert held_out(ds, 2) == ({"q0", "q1", "q0-reworded"}, {"d0", "d1"})
    assert held_out(ds, 0) == (set(), set())


def test_mining_ranks_with_the_first_stage_and_keeps_held_out_passages_out(tmp_path: Path) -> None:
    from rag.pipeline import RagPipeline
    from rag.retrieve import retrieve

    settings = Settings(data_dir=tmp_path / "store")
    data = write_beir(tmp_path / "tiny")
    queries, info = mine_dataset(settings, data, include=r"^d[0-6]$", hold_out_first=1, rng=random.Random(0),
                                 top=4, log=lambda m: None)
    held_out_text, glacier = TOPICS["volcano"][0], TOPICS["glacier"][0]  # q0 held out; d7 outside the split
    assert info.held_out_queries == 1 and info.queries_used == len(queries) == 6
    for q in queries:
        assert len(q.negatives) == 4 and q.positives[0] not in q.negatives
        assert held_out_text not in q.negatives + q.positives and glacier not in q.negatives
    # The pool is the hybrid first stage's order, skipping what the split leaves out.
    pipeline = RagPipeline(settings)
    kb = pipeline.knowledge_base(next(c for c in _collections(settings) if c.startswith("eval-")))
    first = queries[0]
    found = retrieve(first.query, kb, pipeline.embedder_for(kb), settings, mode="hybrid", top_k=8)
    corpus = load_dataset(data).corpus
    ranked = [corpus[c.chunk.source].text for c in found.candidates]
    assert first.negatives == [t for t in ranked if t not in (first.positives[0], held_out_text, glacier)][:4]

    path = tmp_path / "mined.json"
    save_mined(path, queries, [info], {"retrieval": "hybrid"})
    payload = json.loads(path.read_text())
    assert len(payload["passages"]) <= 6, "each passage is stored once"
    again, sources, first_stage = load_mined(path)
    assert again == queries and sources == [info] and first_stage == {"retrieval": "hybrid"}


def _collections(settings: Settings) -> list[str]:
    from rag.store import all_collection_names  # eval-* collections are reserved: not in the user's list

    return all_collection_names(settings)


def test_training_reads_a_mined_file_and_a_time_budget_shortens_it(tmp_path: Path) -> None:
    from training.data import SourceInfo, TrainQuery

    texts = [doc for doc, _ in TOPICS.values()]
    queries = [TrainQuery("tiny", q, [doc], [t for t in texts if t != doc][:4]) for doc, q in TOPICS.values()]
    # as after `reranker label --max-queries`: the file's count is what was mined, not what it holds
    stale = SourceInfo("tiny", "tiny", "beir", queries_used=len(queries) + 5)
    save_mined(tmp_path / "mined.json", queries, [stale], {"retrieval": "hybrid"})
    lines: list[str] = []
    summary = train(tiny_config(None, tmp_path / "m", datasets=[], mined=[str(tmp_path / "mined.json")],
                                max_steps=8, time_budget_min=1e-4), log=lines.append)
    assert summary["mined_by"] == [{"retrieval": "hybrid"}] and summary["train_queries"] == len(TOPICS)
    assert summary["sources"][0]["queries_used"] == len(TOPICS)  # the model card's count: what the mix held
    assert summary["steps"] == 2 and any("time budget" in line for line in lines)
    assert len(predict(tmp_path / "m", PAIRS)) == 2
    with pytest.raises(ValueError, match="nothing to train on"):
        train(tiny_config(None, tmp_path / "n", datasets=[]), log=lambda m: None)


def test_weights_travel_in_parts_and_come_back_the_same_model(tmp_path: Path) -> None:
    data = write_beir(tmp_path / "tiny")
    train(tiny_config(data, tmp_path / "model", max_steps=1), log=lambda m: None)
    script = [sys.executable, str(REPO / "scripts" / "device_weights.py")]
    subprocess.run([*script, "pack", str(tmp_path / "model"), str(tmp_path / "parts")], check=True,
                   capture_output=True)
    parts = sorted((tmp_path / "parts").glob("part*.safetensors"))
    assert len(parts) == 2 and all(p.stat().st_size < 16 * 2**20 for p in parts)
    subprocess.run([*script, "unpack", str(tmp_path / "parts"), str(tmp_path / "back")], check=True,
                   capture_output=True)
    assert predict(tmp_path / "back", PAIRS) == pytest.approx(predict(tmp_path / "model", PAIRS), abs=2e-3)
    card = (tmp_path / "back" / "README.md").read_text()
    assert "carried to the GPU machine in fp16" in card
