"""Two processes on one embedded store. Measured (chromadb 1.5.9): a process that has searched a collection
never sees another process's new vectors, whether through the same collection object or get_collection
again; so while a server holds the store, another process's write is refused with one message naming Chroma's server mode (rag.chroma_client)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import REPO

HOLD = textwrap.dedent("""
    import sys
    from rag.settings import Settings
    from rag.store import KnowledgeBase, hold_embedded
    kb = KnowledgeBase(Settings(data_dir=sys.argv[1]), "docs", embed_model="test")
    hold_embedded(kb.settings)                    # a serving process: the shared claim
    if sys.argv[2] == "write":
        kb.repair()                               # a server that writes, then holds its shared claim again
    print("holding", flush=True)
    sys.stdin.readline()
""")
WRITE = textwrap.dedent("""
    import sys
    from rag.settings import Settings
    from rag.store import KnowledgeBase, StoreError
    kb = KnowledgeBase(Settings(data_dir=sys.argv[1]), "docs", embed_model="test")
    try:
        kb.repair() if sys.argv[2] == "write" else kb.search([1.0, 0.0], 3)
    except StoreError as error:
        print(error)
        sys.exit(3)
    print("done")
""")


def _run(script: str, store: Path, mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, str(store), mode], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def _holder(store: Path, mode: str) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(store), mode], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_second_writer_is_refused_while_a_server_searches(tmp_path: Path) -> None:
    store = tmp_path / "store"
    holder = _holder(store, "search")
    try:
        refused = _run(WRITE, store, "write")
        assert refused.returncode == 3, refused.stderr
        assert "chroma run --path" in refused.stdout and "RAG_CHROMA_HOST" in refused.stdout
        assert f"pid {holder.pid} (python -c), serving it" in refused.stdout  # who holds it, from the lock table
        assert _run(WRITE, store, "search").returncode == 0  # two readers see the same data: allowed
    finally:
        holder.communicate("\n", timeout=30)
    assert _run(WRITE, store, "write").returncode == 0  # the claim ends with the process


def test_a_server_that_wrote_still_refuses_another_writer(tmp_path: Path) -> None:
    store = tmp_path / "store"
    holder = _holder(store, "write")
    try:
        refused = _run(WRITE, store, "write")
        assert refused.returncode == 3 and "server mode" in refused.stdout
    finally:
        holder.communicate("\n", timeout=30)
