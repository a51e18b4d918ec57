"""How many characters the default reranker's token window covers in real passages: why the API may cut each
rerank document to ``api.service.CHARS_PER_TOKEN`` (16) characters per window token before tokenizing it.

    .venv/bin/python scripts/rerank_window_chars.py [--docs 3000]

For each corpus under the shared datasets, over the first N passages longer than the window: the characters the
window's tokens cover, divided by its tokens, at most. A figure near 16 would mean the cut could take text the
model reads.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tokenizers import Tokenizer

from rag import catalog
from rag.rerank import resolve_reranker
from rag.settings import REPO_ROOT

DATASETS = REPO_ROOT.parent / "shared" / "datasets"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=3000, help="passages read per corpus")
    args = parser.parse_args()
    path, info = resolve_reranker(catalog.DEFAULT_RERANKER)
    window = (info.max_length if info and info.max_length else 512) - 2  # less [CLS] and [SEP]: the passage's
    tokenizer = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    for corpus in sorted(DATASETS.glob("**/corpus.jsonl")):
        worst, over = 0.0, 0
        with open(corpus, encoding="utf-8") as lines:
            for n, line in enumerate(lines):
                if n >= args.docs:
                    break
                doc = json.loads(line)
                encoding = tokenizer.encode(f"{doc.get('title', '')} {doc.get('text', '')}".strip(),
                                            add_special_tokens=False)
                if len(encoding.ids) >= window:
                    over += 1
                    worst = max(worst, encoding.offsets[window - 1][1] / window)
        print(f"{corpus.relative_to(DATASETS)}: {over} passages over the {window}-token window, "
              f"at most {worst:.2f} characters per token")


if __name__ == "__main__":
    main()
