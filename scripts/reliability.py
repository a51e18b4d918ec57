"""The fault-and-load suite (issues 14, 22, 36): bad inputs, kills, a Chroma server that dies, LLM faults, load,
long jobs.

    .venv/bin/python scripts/reliability.py            # all cases, ~10-15 min on 2 cores; writes docs/reliability.md
    .venv/bin/python scripts/reliability.py -k bad,kill  # the cases whose name holds "bad" or "kill": their rows only
    .venv/bin/python scripts/reliability.py --heavy    # only the heavy cases (a 1,500-page PDF; 8 browsers during a
                                                       # 12-PDF upload), ~15-20 min; their own table in the doc

Every case runs the product as a user would (the ``rerank-rag`` CLI, or the library in a child process where
no command exists, e.g. an upload's name) on a store that already holds the sample documents. After each
case the documents it added are deleted and a snapshot is compared with the one taken before the first case:
the document list, every chunk count, no chunk outside a committed document, and the answer (text and chunk
ids) to a question over the sample documents. A case passes when the user saw what was expected and nothing
else in the store changed. Peak RSS is the largest of the case's child processes (os.wait4), not this
script's. Exits 1 when any case failed.

The cases live in ``scripts/reliability_suite/`` by concern (inputs, faults, heavy, api_cases, long_jobs), on what
``core`` shares; ``runner`` runs them and writes the table.
"""

from __future__ import annotations

import sys

from reliability_suite.runner import main

if __name__ == "__main__":
    sys.exit(main())
