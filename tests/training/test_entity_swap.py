"""The renamed-entity negatives that `reranker label --entity-swaps` adds (training/entity_swap.py)."""

from __future__ import annotations

import random

from training.data import TrainQuery
from training.entity_swap import add_entity_swaps, names, shared_name

NVIDIA = "NVIDIA's total net sales rose 14 % in the quarter, led by Data Center; NVIDIA expects growth."
APPLE = "Apple reported net sales of $81.8 billion for the quarter, down 1 % from a year earlier."


def test_a_question_word_is_not_a_name_and_a_possessive_is_the_name() -> None:
    assert names("What were NVIDIA's total net sales in The Data Center segment?") == {"NVIDIA", "Data Center"}
    assert shared_name(TrainQuery("sec", "How did NVIDIA's net sales change?", [NVIDIA])) == "NVIDIA"
    assert shared_name(TrainQuery("man", "list directory contents", ["List information about the FILEs."])) is None


def test_the_gold_passage_is_renamed_to_another_questions_name_and_only_there() -> None:
    queries = [TrainQuery("sec", "How did NVIDIA's net sales change?", [NVIDIA], ["other"]),
               TrainQuery("sec", "What were Apple's net sales?", [APPLE], []),
               TrainQuery("man", "list directory contents", ["List information about the FILEs."], ["x"])]
    assert add_entity_swaps(queries, random.Random(0)) == 2
    swapped = queries[0].negatives[-1]
    assert queries[0].negatives[0] == "other" and "NVIDIA" not in swapped and swapped.count("Apple") == 2
    assert swapped.replace("Apple", "NVIDIA") == NVIDIA  # nothing but the name changed
    assert queries[0].positives == [NVIDIA]  # the gold passage itself is untouched
    assert "NVIDIA" in queries[1].negatives[-1] and "Apple" not in queries[1].negatives[-1]
    assert queries[2].negatives == ["x"]  # a question sharing no name with its passage gets nothing


def test_labelling_scores_the_renamed_passage_and_the_teacher_reads_the_name(tmp_path) -> None:
    from training.data import SourceInfo
    from training.mine import load_mined, save_mined
    from training.teacher import label_mined

    queries = [TrainQuery("sec", "How did NVIDIA's net sales change in the quarter?", [NVIDIA], [APPLE]),
               TrainQuery("sec", "What were Apple's net sales for the quarter?", [APPLE], [NVIDIA])]
    save_mined(tmp_path / "mined.json", queries, [SourceInfo("sec", "sec", "beir")], {"retrieval": "hybrid"})
    info = label_mined(tmp_path / "mined.json", tmp_path / "labelled.json", "cross-encoder/ms-marco-MiniLM-L-12-v2#64",
                       negatives=1, entity_swaps=True, log=lambda m: None)
    assert info["entity_swaps"] == 2 and info["pairs"] == 2 * 3
    for q in load_mined(tmp_path / "labelled.json")[0]:
        assert len(q.negatives) == len(q.negative_scores) == 2
        assert q.positive_scores[0] > q.negative_scores[1]  # the same passage under another name reads worse
