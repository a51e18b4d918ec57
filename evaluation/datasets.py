"""Loader for BEIR-format retrieval sets (the format of ``../shared/datasets``).

A dataset folder holds:

* ``corpus.jsonl``  -- one ``{"id", "title", "text"}`` object per line; a document kept as a file (a PDF)
  has ``"path"`` (relative to the folder) and may leave ``text`` empty: it is parsed and chunked like an
  ingested file;
* ``queries.jsonl`` -- one ``{"id", "text"}`` object per line; ``"answerable": false`` marks a question the
  corpus does not answer (it needs no qrels): the evaluation reports how often the answer warns on those;
* ``qrels.tsv``     -- ``query_id<TAB>doc_id<TAB>score``, no header; ``score > 0`` means relevant.

* ``answers.jsonl`` -- optional: one ``{"id", "answers": [...]}`` object per query, its gold answer texts
  (``rerank-rag eval --answers`` scores the answers with them).

Other extra files (``query_meta.jsonl``, ...) are ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path


class DatasetFormatError(ValueError):
    """A dataset folder is missing a file or has a malformed line."""


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str
    path: Path | None = None  # the document's file (corpus.jsonl "path"), read instead of ``text``


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    answerable: bool = True  # queries.jsonl "answerable": false: the corpus does not answer it


@dataclass
class RetrievalDataset:
    """A BEIR-format retrieval set: corpus, queries (in file order) and relevance judgements."""

    name: str
    corpus: dict[str, Document]
    queries: dict[str, Query]
    qrels: dict[str, dict[str, float]] = field(default_factory=dict)
    answers: dict[str, list[str]] = field(default_factory=dict)  # query id -> gold answers (answers.jsonl)

    def relevant(self, query_id: str) -> set[str]:
        """Doc ids judged relevant (score > 0) for ``query_id``."""
        return {d for d, s in self.qrels.get(query_id, {}).items() if s > 0}

    def queries_with_qrels(self, limit: int | None = None, relevant_docs: str | None = None) -> list[Query]:
        """Queries that have at least one relevant document, in file order, at most ``limit``.

        ``relevant_docs``: a regex; keep only queries whose relevant doc ids all match it (a held-out
        split such as SQuAD articles 38-47, ``^s(3[89]|4[0-7])_``). The corpus is not filtered."""
        pattern = re.compile(relevant_docs) if relevant_docs else None
        out: list[Query] = []
        for q in self.queries.values():
            relevant = self.relevant(q.id)
            if relevant and q.answerable and (pattern is None or all(pattern.search(d) for d in relevant)):
                out.append(q)
                if limit is not None and len(out) >= limit:
                    break
        return out

    def unanswerable_queries(self, limit: int | None = None) -> list[Query]:
        """Queries marked ``"answerable": false`` that have text, in file order, at most ``limit``."""
        return [q for q in self.queries.values() if not q.answerable and q.text.strip()][:limit]

    def subset(self, query_ids) -> RetrievalDataset:
        """Same corpus, only the given queries (and their qrels)."""
        keep = set(query_ids)
        return RetrievalDataset(
            name=self.name,
            corpus=self.corpus,
            queries={k: v for k, v in self.queries.items() if k in keep},
            qrels={k: v for k, v in self.qrels.items() if k in keep},
            answers={k: v for k, v in self.answers.items() if k in keep},
        )


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DatasetFormatError(f"missing file: {path}")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(f"{path}:{n}: invalid JSON ({exc.msg})") from exc
            if "id" not in row or "text" not in row:
                raise DatasetFormatError(f"{path}:{n}: needs 'id' and 'text' fields")
            rows.append(row)
    return rows


def load_qrels(path: Path) -> dict[str, dict[str, float]]:
    if not path.is_file():
        raise DatasetFormatError(f"missing file: {path}")
    qrels: dict[str, dict[str, float]] = {}
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.rstrip("\n\r")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 3:
                raise DatasetFormatError(f"{path}:{n}: expected query_id<TAB>doc_id<TAB>score")
            try:
                score = float(parts[2])
            except ValueError as exc:
                raise DatasetFormatError(f"{path}:{n}: score {parts[2]!r} is not a number") from exc
            qrels.setdefault(parts[0], {})[parts[1]] = score
    return qrels


def load_dataset(path: str | Path, name: str | None = None) -> RetrievalDataset:
    """Load a BEIR-format folder into a :class:`RetrievalDataset`."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetFormatError(f"dataset folder not found: {root}")
    corpus = {
        str(r["id"]): Document(str(r["id"]), str(r.get("title") or ""), str(r["text"]),
                               root / str(r["path"]) if r.get("path") else None)
        for r in _read_jsonl(root / "corpus.jsonl")
    }
    queries = {str(r["id"]): Query(str(r["id"]), str(r["text"]), r.get("answerable") is not False)
               for r in _read_jsonl(root / "queries.jsonl")}
    qrels = load_qrels(root / "qrels.tsv")
    return RetrievalDataset(name=name or root.name, corpus=corpus, queries=queries, qrels=qrels,
                            answers=load_answers(root / "answers.jsonl"))


def load_answers(path: Path) -> dict[str, list[str]]:
    """``answers.jsonl``: query id -> its gold answer texts; empty when the file does not exist."""
    if not path.is_file():
        return {}
    answers: dict[str, list[str]] = {}
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(f"{path}:{n}: invalid JSON ({exc.msg})") from exc
            given = row.get("answers")
            if "id" not in row or not isinstance(given, list):
                raise DatasetFormatError(f"{path}:{n}: needs 'id' and an 'answers' list")
            answers[str(row["id"])] = [str(a) for a in given if str(a).strip()]
    return answers


def is_beir_folder(path: str | Path) -> bool:
    root = Path(path)
    return all((root / f).is_file() for f in ("corpus.jsonl", "queries.jsonl", "qrels.tsv"))


def list_datasets(root: str | Path) -> list[Path]:
    """The BEIR folders under ``root`` (``Settings.datasets_dir``), sorted; none when it does not exist."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(path.parent for path in root.glob("**/corpus.jsonl") if is_beir_folder(path.parent))


def question_texts(path: str | Path, n: int) -> list[str]:
    """The texts of the first ``n`` queries that have judgements (what the benchmarks time)."""
    return [query.text for query in load_dataset(path).queries_with_qrels(n)]
