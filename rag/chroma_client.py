"""Opening Chroma: one client per store for the whole process, a server's transport errors in plain words,
and one process at a time writing to an embedded store.

**Two processes on one embedded store** (measured with chromadb 1.5.9, ``PersistentClient``): a process that
has queried a collection keeps its vector index in memory; a commit by another process lands in the
SQLite log, so ``get`` (the registry, BM25's reads) sees it at once, but ``query`` does not, neither
through the same collection object nor through ``get_collection`` again. Only a fresh client after
``clear_system_cache()`` does, and that call tears down the client every other thread of the process is
using. So an embedded store is one process's writer: a server (``serve``, the app) holds a shared lock on
``<store>/rerank-rag.lock`` for its life, a write takes an exclusive one while it runs, and the process
that cannot get its lock gets one message naming the process that holds the store (from the kernel's lock
table) and Chroma's server mode, where every process sees every commit.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import chromadb
import httpx
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection

from rag.settings import Settings


class StoreError(RuntimeError):
    """The store cannot serve this request; the message says why in plain words."""


# One client per store for the whole process, opened under a lock: chromadb keeps its systems in a
# class-level dict keyed by path, and two threads constructing a client for the same fresh path at once
# (four browser tabs on a new app server) race inside it: KeyError '<path>', "'RustBindingsAPI' object
# has no attribute 'bindings'", "Could not connect to tenant default_tenant". lru_cache does not help:
# it runs the function in every thread that misses.
_CLIENTS: dict[tuple[str | None, str | None, int], ClientAPI] = {}
_CLIENTS_LOCK = threading.Lock()


def _client(data_dir: str | None, host: str | None, port: int) -> ClientAPI:
    key = (data_dir, host, port)
    client = _CLIENTS.get(key)
    if client is None:
        with _CLIENTS_LOCK:
            client = _CLIENTS.get(key)
            if client is None:
                client = _CLIENTS[key] = _open(data_dir, host, port)
    return client


def unreachable(host: str, port: int, error: BaseException) -> StoreError:
    """The one message for a Chroma server that cannot be reached, at the first connect or mid-request."""
    detail = (str(error).splitlines() or [""])[0].strip() or type(error).__name__
    return StoreError(f"cannot reach the Chroma server at {host}:{port}: the knowledge base is unreachable "
                      f"({detail}); check that the server is running")


class _Guarded:
    """A Chroma HTTP client or collection whose calls raise :class:`StoreError` when the server is gone.

    chromadb lets httpx's transport errors through as they are ("Server disconnected without sending a
    response.", "Connection refused"), which every caller (CLI, app pages, API, ingest) would have to know;
    as a StoreError they are told in plain words: the CLI's one line, the app's error box, the API's 503,
    and one failed file in an ingest. Collections the client returns are guarded too.
    """

    def __init__(self, target: object, host: str, port: int) -> None:
        self._target, self._host, self._port = target, host, port

    def __getattr__(self, name: str):
        value = getattr(self._target, name)
        if not callable(value):
            return value

        def call(*args, **kwargs):
            try:
                result = value(*args, **kwargs)
            except httpx.TransportError as error:  # connect, read, write, protocol and timeout errors
                raise unreachable(self._host, self._port, error) from error
            if isinstance(result, Collection):
                return _Guarded(result, self._host, self._port)
            return result

        return call


def _open(data_dir: str | None, host: str | None, port: int) -> ClientAPI:
    telemetry = chromadb.config.Settings(anonymized_telemetry=False)
    if host:
        try:
            client = chromadb.HttpClient(host=host, port=port, settings=telemetry)
            client.heartbeat()
        except Exception as error:  # noqa: BLE001 - connection errors come in many types
            raise unreachable(host, port, error) from error
        return _Guarded(client, host, port)  # type: ignore[return-value] - the same calls, errors translated
    assert data_dir is not None
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=data_dir, settings=telemetry)


def hnsw_configuration(settings: Settings) -> dict:
    """The configuration new collections are created with: cosine space and the settings' HNSW parameters, which
    Chroma fixes at creation (all but ef_search); an existing collection keeps its own until reindexed."""
    return {"hnsw": {"space": "cosine", "max_neighbors": settings.hnsw_max_neighbors,
                     "ef_construction": settings.hnsw_ef_construction, "ef_search": settings.hnsw_ef_search}}


def embedded_path(settings: Settings) -> str:
    return str(Path(settings.data_dir).expanduser().resolve() / "chroma")


def open_client(settings: Settings) -> ClientAPI:
    """Chroma server when ``chroma_host`` is set, else the embedded store under ``data_dir``."""
    if settings.chroma_host:
        return _client(None, settings.chroma_host, settings.chroma_port)
    return _client(embedded_path(settings), None, 0)


# ---- one writer per embedded store ---------------------------------------------------------------------
LOCK_FILE = "rerank-rag.lock"
_HELD: dict[str, list] = {}  # store path -> [lock file descriptor, writes under way, held by a server]
_HELD_LOCK = threading.Lock()


def holders(path: str, *, others_only: bool = True) -> list[tuple[int, str, bool]]:
    """The processes holding a claim on the embedded store at ``path``: (pid, what it runs, writing), read from
    the kernel's lock table (Linux /proc/locks; empty elsewhere), so that a refusal can name who holds the store.

    What it runs is the program and its subcommand only ("rerank-rag serve", "streamlit run"): a command
    line may carry other arguments that are nobody else's business."""
    try:
        stat = os.stat(os.path.join(path, LOCK_FILE))
        table = Path("/proc/locks").read_text()
    except OSError:
        return []
    lock_id = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    found: dict[int, tuple[int, str, bool]] = {}
    for line in table.splitlines():
        fields = line.split()
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":  # "->": a waiter, not a holder
            continue
        pid, where = int(fields[4]), fields[5]  # where: major:minor (hex) of the device, then the inode
        if where != lock_id or (others_only and pid == os.getpid()):
            continue
        found[pid] = (pid, _program(pid), fields[3] == "WRITE")
    return sorted(found.values())


def _program(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:
        return "a process that has ended"
    argv = [a for a in argv if a]
    if len(argv) > 1 and os.path.basename(argv[0]).startswith("python"):
        if argv[1] in ("-c", "-m"):  # `python -c CODE` says no more than that; `python -m pytest` names its module
            return " ".join(["python", argv[1]] + ([argv[2]] if argv[1] == "-m" and len(argv) > 2 else []))
        argv = argv[1:]  # `python .venv/bin/rerank-rag serve`: the script is the program
    words = [os.path.basename(argv[0])] + [a for a in argv[1:2] if not a.startswith("-")] if argv else []
    return " ".join(words) or "an unnamed process"


def describe_holders(found: list[tuple[int, str, bool]]) -> str:
    """``pid 1234 (rerank-rag serve), serving it`` for each holder, joined; "another process" when unknown."""
    if not found:
        return "another process"
    return "; ".join(f"pid {pid} ({program}), {'writing to' if writes else 'serving'} it"
                     for pid, program, writes in found)


def _refused(path: str, writing: bool) -> StoreError:
    doing = "write to" if writing else "serve"
    return StoreError(
        f"the embedded store {path} is in use by {describe_holders(holders(path))}, so this process cannot {doing} "
        "it: two processes on one embedded Chroma store do not see each other's writes. Stop the other process "
        f"(`rerank-rag serve`, the app, an ingest), or run Chroma in server mode (`chroma run --path {path}`) and "
        "point every process at it with RAG_CHROMA_HOST and RAG_CHROMA_PORT")


def _entry(path: str) -> list:
    entry = _HELD.get(path)
    if entry is None:
        Path(path).mkdir(parents=True, exist_ok=True)
        entry = _HELD[path] = [os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644), 0, False]
    return entry


def _flock(entry: list, mode: int, path: str, writing: bool) -> None:
    try:
        fcntl.flock(entry[0], mode | fcntl.LOCK_NB)
    except BlockingIOError:
        if entry[2]:  # a failed upgrade may have dropped a server's shared lock (flock converts non-atomically)
            try:
                fcntl.flock(entry[0], fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
        raise _refused(path, writing) from None


def store_holders(settings: Settings) -> list[tuple[int, str, bool]]:
    """The other processes holding a claim on this settings' embedded store (none for a Chroma server)."""
    return [] if settings.chroma_host else holders(embedded_path(settings))


def hold_embedded(settings: Settings) -> None:
    """A long-running process (``rerank-rag serve``, the app) holds a shared claim on its embedded store for
    its whole life: another process's write is then refused, as this one would never see it.

    flock rather than a pid file: the kernel drops it when the process dies (kill -9 included), so a crashed
    server never leaves the store locked. A server-mode store needs no claim.
    """
    if settings.chroma_host:
        return
    path = embedded_path(settings)
    with _HELD_LOCK:
        entry = _entry(path)
        if entry[2]:
            return
        if not entry[1]:
            _flock(entry, fcntl.LOCK_SH, path, writing=False)
        entry[2] = True


@contextmanager
def writing(settings: Settings) -> Iterator[None]:
    """An exclusive claim on an embedded store while chunks are written: refused at once (StoreError) when
    another process holds one. A server goes back to its shared claim afterwards, others let go."""
    if settings.chroma_host:
        yield
        return
    path = embedded_path(settings)
    with _HELD_LOCK:
        entry = _entry(path)
        if not entry[1]:
            _flock(entry, fcntl.LOCK_EX, path, writing=True)
        entry[1] += 1
    try:
        yield
    finally:
        with _HELD_LOCK:
            entry[1] -= 1
            if not entry[1]:
                fcntl.flock(entry[0], fcntl.LOCK_SH if entry[2] else fcntl.LOCK_UN)
