"""How often does the abstention warning fire on quarterly filings, by kind of question? (issue 35)

    nice -n 5 .venv/bin/python experiments/abstain_filings.py --data-dir /tmp/abstain-filings --out runs/abstain_filings.json

The dev data the decision was fitted on are Wikipedia passages. This asks the questions of
``pdf_docugami_sec10q`` (12 SEC 10-Qs: 3 companies x 4 quarters) through ``RagPipeline.ask`` with the defaults
and the extractive answer, over stores that make them of three kinds:

* answerable: every question, over all 12 filings;
* off the collection: each company's questions over the other two companies' filings (three stores);
* on the topic, not answered: the questions about the latest quarter's filings alone (2023 Q3) over the other
  nine filings: the same companies and disclosures, an earlier period.

Per kind it prints the share warned and the mean probability, and writes every question's evidence
(``--out``), the data a fit on filings would need. Each store is ingested once under ``--data-dir``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation.datasets import load_dataset  # noqa: E402
from ingest.pipeline import Ingestor, SourceFile  # noqa: E402
from rag.pipeline import RagPipeline  # noqa: E402
from rag.settings import Settings  # noqa: E402

LATEST = "2023 Q3"


def store(base: Path, name: str, docs: list) -> Settings:
    """A store of its own holding ``docs``, ingested unless it holds them already."""
    settings = Settings(data_dir=base / name, collection="filings")
    if not (base / name / ".ingested").is_file():
        results = Ingestor(settings, "filings").ingest([SourceFile(doc.id, path=doc.path) for doc in docs])
        failed = [r.line() for r in results if r.status == "failed"]
        if failed:
            raise SystemExit("\n".join(failed))
        (base / name / ".ingested").write_text("\n".join(doc.id for doc in docs))
    return settings


def ask(settings: Settings, kind: str, queries: list) -> list[dict]:
    pipeline = RagPipeline(settings)
    rows = []
    for query in queries:
        result = pipeline.ask(query.text)
        decision = result.abstention
        rows.append({"kind": kind, "id": query.id, "question": query.text, "warned": result.low_confidence,
                     "probability": decision.probability if decision else None,
                     "model": decision.model if decision else None,
                     "features": decision.features if decision else {}})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True, help="a folder for the stores, never data/store")
    ap.add_argument("--dataset", default=None, help="default: <datasets_dir>/pdf_docugami_sec10q")
    ap.add_argument("--out", default=None, help="a JSON file for every question's evidence")
    args = ap.parse_args()
    base = Path(args.data_dir)
    folder = Path(args.dataset) if args.dataset else Settings().datasets_dir / "pdf_docugami_sec10q"
    dataset = load_dataset(folder)
    docs = sorted(dataset.corpus.values(), key=lambda d: d.id)
    queries = list(dataset.queries_with_qrels())
    company = {doc.id: doc.id.split()[-1].removesuffix(".pdf") for doc in docs}
    rows = ask(store(base, "all", docs), "answerable", queries)
    for ticker in sorted(set(company.values())):
        others = [doc for doc in docs if company[doc.id] != ticker]
        asked = [q for q in queries if {company[d] for d in dataset.relevant(q.id)} == {ticker}]
        rows += ask(store(base, f"without-{ticker}", others), "off the collection", asked)
    earlier = [doc for doc in docs if not doc.id.startswith(LATEST)]
    latest = [q for q in queries if all(d.startswith(LATEST) for d in dataset.relevant(q.id))]
    rows += ask(store(base, "without-latest", earlier), "on the topic, not answered", latest)
    print("| kind | questions | warned | mean probability |\n|---|---|---|---|")
    for kind in ("answerable", "off the collection", "on the topic, not answered"):
        mine = [row for row in rows if row["kind"] == kind]
        probabilities = [row["probability"] for row in mine if row["probability"] is not None]
        print(f"| {kind} | {len(mine)} | {sum(row['warned'] for row in mine) / max(len(mine), 1):.0%} | "
              f"{sum(probabilities) / max(len(probabilities), 1):.2f} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
