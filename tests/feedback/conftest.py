"""What the feedback tests share: the sample documents in a store, questions about them with marks, and one
real fine-tune on those marks (the default reranker's int8 weights dequantized, a step or two of training,
exported to int8 ONNX as the app serves it) that the training and the app tests both read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag.feedback import FeedbackStore
from rag.pipeline import RagPipeline
from rag.settings import Settings
from tests.helpers import ingest_sample_in_small_chunks, write_dataset

QUESTIONS = [
    "How long does the battery take to charge?",
    "How long is the warranty on the frame?",
    "How many days of paid holiday do employees get?",
    "How long do I have to return a bike for a refund?",
    "What is the top speed of the motor assistance?",
    "How do I clean the bike?",
]


def small_training(data_dir: Path, dev: Path, **changes) -> Settings:
    """Settings that make a fine-tune take seconds: 4 marked questions suffice, half a minute of training."""
    return Settings(**{"data_dir": data_dir, "feedback_min_questions": 4, "feedback_holdout": 0.34,
                       "feedback_dev_set": str(dev), "feedback_dev_queries": 4, "feedback_train_minutes": 0.3,
                       "feedback_epochs": 1, **changes})


def mark_questions(settings: Settings, questions: list[str] = QUESTIONS, collection: str = "default") -> None:
    """As a user on the Ask page would: the first chunk shown answers the question, the second does not."""
    pipeline, store = RagPipeline(settings), FeedbackStore(settings)
    for question in questions:
        result = pipeline.ask(question, collection=collection, generate=False)
        store.add(collection, question, chunk_id=result.chunks[0].chunk_id, label="relevant", reranker=result.reranker)
        store.add(collection, question, chunk_id=result.chunks[1].chunk_id, label="irrelevant", reranker=result.reranker)


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample documents ingested once (small chunks); tests copy it so that each writes its own marks."""
    return ingest_sample_in_small_chunks(tmp_path_factory.mktemp("feedback-samples") / "store")


@pytest.fixture
def store_copy(sample_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(sample_store, copy)
    return copy


@pytest.fixture(scope="session")
def dev_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("feedback-dev") / "dev")


@pytest.fixture(scope="session")
def trained(sample_store: Path, dev_set: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    """(settings, job folder) of one finished fine-tune of the default reranker on the sample's marks."""
    from training.feedback_job import start

    data_dir = tmp_path_factory.mktemp("feedback-trained") / "store"
    shutil.copytree(sample_store, data_dir)
    settings = small_training(data_dir, dev_set)
    mark_questions(settings)
    return settings, start(settings, "default", background=False)
