"""`rerank-rag reranker train` on a tiny set this test writes: it trains, loads, is deterministic."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from evaluation.datasets import load_dataset
from training.cli import register
from training.data import filter_dataset
from training.train import TrainConfig, train

TOPICS = {
    "volcano": ("Mount Etna is an active volcano on the east coast of Sicily.", "Which island is Mount Etna on?"),
    "piano": ("The piano was invented by Bartolomeo Cristofori around the year 1700.", "Who invented the piano?"),
    "coffee": ("Coffee beans are the roasted seeds of the Coffea plant's berries.", "What are coffee beans?"),
    "tides": ("Ocean tides are caused mainly by the gravitational pull of the Moon.", "What causes tides?"),
    "bees": ("Honey bees communicate the location of flowers with a waggle dance.", "How do bees tell where flowers are?"),
    "rust": ("Iron rusts when it reacts with oxygen and water to form iron oxide.", "Why does iron rust?"),
    "opera": ("La Traviata is an opera in three acts by Giuseppe Verdi.", "Who wrote La Traviata?"),
    "glacier": ("Glaciers form where snow accumulates faster than it melts over many years.", "How do glaciers form?"),
}


def write_beir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "corpus.jsonl").open("w") as c, (root / "queries.jsonl").open("w") as q, \
            (root / "qrels.tsv").open("w") as r:
        for i, (key, (doc, question)) in enumerate(TOPICS.items()):
            c.write(json.dumps({"id": f"d{i}", "title": key, "text": doc}) + "\n")
            q.write(json.dumps({"id": f"q{i}", "text": question}) + "\n")
            r.write(f"q{i}\td{i}\t1\n")
    return root


def tiny_config(data: Path, out: Path, seed: int = 3, **kw) -> TrainConfig:
    base = dict(datasets=[str(data)], out=str(out), seed=seed, max_length=48, max_steps=3, queries_per_step=2,
                negatives=3, mine_top=5, threads=1, log_every=1)
    base.update(kw)
    return TrainConfig(**base)


def predict(folder: Path, pairs):
    from sentence_transformers import CrossEncoder

    return [float(x) for x in CrossEncoder(str(folder)).predict(pairs, show_progress_bar=False)]


PAIRS = [("Who invented the piano?", TOPICS["piano"][0]), ("Who invented the piano?", TOPICS["rust"][0])]


def test_train_writes_a_loadable_crossencoder_with_a_model_card(tmp_path: Path) -> None:
    data = write_beir(tmp_path / "tiny")
    lines: list[str] = []
    summary = train(tiny_config(data, tmp_path / "model"), log=lines.append)
    out = tmp_path / "model"
    assert summary["steps"] == 3 and summary["pairs"] == 3 * 2 * 4
    assert any("ETA" in line for line in lines), "progress lines carry an ETA"
    scores = predict(out, PAIRS)
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)
    card = (out / "README.md").read_text()
    for needle in ("apache-2.0", "base_model: sentence-transformers/all-MiniLM-L6-v2", "head is new",
                   "listwise softmax cross-entropy", "seed 3", "tiny"):
        assert needle in card
    assert json.loads((out / "training_summary.json").read_text())["train_queries"] == len(TOPICS)


def test_same_seed_same_model_other_seed_differs(tmp_path: Path) -> None:
    data = write_beir(tmp_path / "tiny")
    train(tiny_config(data, tmp_path / "a", max_steps=2), log=lambda m: None)
    train(tiny_config(data, tmp_path / "b", max_steps=2), log=lambda m: None)
    train(tiny_config(data, tmp_path / "c", max_steps=2, seed=4), log=lambda m: None)
    a, b, c = (predict(tmp_path / x, PAIRS) for x in "abc")
    assert a == b
    assert a != c


def test_trains_on_user_pairs_jsonl_and_mines_missing_negatives(tmp_path: Path) -> None:
    pairs = tmp_path / "my_pairs.jsonl"
    rows = [{"query": q, "positive": d} for d, q in TOPICS.values()]
    rows[0]["negatives"] = [TOPICS["opera"][0]]  # a user-given negative is kept
    pairs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    summary = train(tiny_config(pairs, tmp_path / "m", max_steps=2), log=lambda m: None)
    assert summary["sources"][0]["kind"] == "jsonl" and summary["sources"][0]["queries_used"] == len(TOPICS)
    assert len(predict(tmp_path / "m", PAIRS)) == 2


def test_bad_pairs_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "x", "answer": "y"}) + "\n")
    with pytest.raises(ValueError, match="'query' and 'positive'"):
        train(tiny_config(bad, tmp_path / "m"), log=lambda m: None)


def test_filters_keep_held_out_documents_out(tmp_path: Path) -> None:
    data = write_beir(tmp_path / "tiny")
    ds = load_dataset(data)
    kept, dropped = filter_dataset(ds, include=r"^d[0-5]$", exclude_texts={TOPICS["volcano"][0]})
    assert set(kept.corpus) == {"d1", "d2", "d3", "d4", "d5"} and dropped == 1
    assert set(kept.queries) == {"q1", "q2", "q3", "q4", "q5"}


def test_cli_registers_reranker_train_mine_and_export() -> None:
    parser = argparse.ArgumentParser(prog="rerank-rag")
    register(parser.add_subparsers(dest="command"))
    a = parser.parse_args(["reranker", "train", "--dataset", "d1", "--dataset", "d2", "--out", "o",
                           "--include", "d1=^s0", "--max-queries", "d2=5", "--seed", "7"])
    assert a.dataset == ["d1", "d2"] and a.seed == 7 and callable(a.func)
    a = parser.parse_args(["reranker", "export", "src", "dst"])
    assert a.src == "src" and callable(a.func)
    a = parser.parse_args(["reranker", "mine", "--dataset", "d1", "--out", "m.json", "--hold-out-first", "d1=300"])
    assert a.dataset == ["d1"] and a.hold_out_first == ["d1=300"] and a.top == 20 and callable(a.func)
    a = parser.parse_args(["reranker", "train", "--mined", "m.json", "--out", "o", "--time-budget", "3"])
    assert a.mined == ["m.json"] and a.dataset == [] and a.time_budget == 3.0 and a.device == "auto"


def test_export_int8_onnx_scores_like_torch(tmp_path: Path) -> None:
    from rag.rerank import CrossEncoderReranker
    from training.export import SHIPPED_ONNX, export_onnx

    data = write_beir(tmp_path / "tiny")
    train(tiny_config(data, tmp_path / "model", max_steps=1), log=lambda m: None)
    path = export_onnx(tmp_path / "model", tmp_path / "shipped")
    assert path == tmp_path / "shipped" / SHIPPED_ONNX and not (tmp_path / "shipped" / "onnx" / "model.onnx").exists()
    assert not (tmp_path / "shipped" / "model.safetensors").exists()
    onnx = CrossEncoderReranker(str(tmp_path / "shipped"))
    torch_ = CrossEncoderReranker(str(tmp_path / "model"))
    assert (onnx.backend, torch_.backend) == ("onnx", "torch")
    texts = [t for t, _ in TOPICS.values()]
    assert onnx.score("Who invented the piano?", texts) == pytest.approx(
        torch_.score("Who invented the piano?", texts), abs=0.02)


def test_continued_training_records_its_lineage_without_machine_paths(tmp_path: Path) -> None:
    data = write_beir(tmp_path / "tiny")
    train(tiny_config(data, tmp_path / "stage1", max_steps=2), log=lambda m: None)
    summary = train(tiny_config(data, tmp_path / "stage2", max_steps=1, base=str(tmp_path / "stage1")),
                    log=lambda m: None)
    assert summary["continued_from"]["steps"] == 2 and summary["steps"] == 1
    assert summary["continued_from"]["continued_from"] is None
    card = (tmp_path / "stage2" / "README.md").read_text()
    assert "### Stage 1" in card and "### Stage 2" in card and "2 stages" in card
    assert "site-packages" not in card and "site-packages" not in json.dumps(summary)
    assert summary["continued_from"]["base"].startswith("all-MiniLM-L6-v2 from the PyPI package")


def test_a_cap_samples_each_mined_source_alone() -> None:
    import random

    from training.data import TrainQuery
    from training.train import cap_per_source

    queries = ([TrainQuery("squad11_dev", f"s{i}", ["p"]) for i in range(50)]
               + [TrainQuery("emanual_samsung/smarttv", f"t{i}", ["p"]) for i in range(5)])
    capped = cap_per_source(queries, {"squad11_dev": 10}, random.Random(1))
    assert [q.source for q in capped].count("squad11_dev") == 10
    assert [q.query for q in capped if q.source != "squad11_dev"] == [f"t{i}" for i in range(5)]
    # a source is named whole or by its last part; "*" caps every source
    assert len(cap_per_source(queries, {"smarttv": 2}, random.Random(1))) == 52
    assert len(cap_per_source(queries, {"*": 3}, random.Random(1))) == 6
    again = cap_per_source(queries, {"squad11_dev": 10}, random.Random(1))
    assert [q.query for q in again] == [q.query for q in capped]
