"""The HTTP API's ways in (issue 22) and bounds, each through real HTTP on 127.0.0.1; two writers on one
embedded store."""

from __future__ import annotations

from pathlib import Path

from reliability_suite.core import Child, Outcome, case, cli, python, run

# -- the HTTP API's ways in (issue 22): each through real HTTP on 127.0.0.1, refused before a model loads
_API_PROBE = """
import sys, threading, time, httpx, uvicorn
from api.keys import KeyStore
from api.server import create_app
from rag.settings import Settings
from tests.helpers import free_port
settings = Settings()
if sys.argv[1] == "keyed":
    store = KeyStore(settings)
    store.revoke("probe-writer")  # one probe key per store, whichever case made it
    _, token = store.create("probe-writer", collection="*", scope="write")
port = free_port()
server = uvicorn.Server(uvicorn.Config(create_app(settings, warm=False), host="127.0.0.1", port=port,
                                       log_level="warning"))
threading.Thread(target=server.run, daemon=True).start()
while not server.started:
    time.sleep(0.05)
url, auth = f"http://127.0.0.1:{port}", ({"Authorization": f"Bearer {token}"} if sys.argv[1] == "keyed" else {})
for line in sys.stdin.read().split("\\n"):
    if line.strip():
        print(eval(line, {"httpx": httpx, "url": url, "auth": auth, "port": port}), flush=True)
server.should_exit = True
"""


def _api_probe(mode: str, probes: list[str], env: dict[str, str]) -> list[str]:
    done = run(python(_API_PROBE, mode), env, stdin="\n".join(probes))
    return done.lines or [done.err.strip()[-200:]]


@case("API: upload, delete, ask into the store's own collections (a write key)",
      "404 'reserved' for rerank-rag-keys, rerank-rag-registry, eval-*; every key still there",
      "tests/api/test_security.py::test_a_write_key_cannot_touch_the_stores_own_collections", server=True)
def _api_internal(work: Path, env: dict[str, str]) -> Outcome:
    probes = [f"httpx.post(url + '/v1/collections/{name}/documents', headers=auth, "
              "files={'files': ('a.txt', b'planted', 'text/plain')}).status_code"
              for name in ("rerank-rag-keys", "rerank-rag-registry", "eval-x-0123")]
    probes.append("httpx.delete(url + '/v1/collections/rerank-rag-keys/documents/x', headers=auth).status_code")
    lines = _api_probe("keyed", probes, env)
    keys = run(cli("keys", "list"), env)
    passed = lines == ["404"] * 4 and "probe-writer" in keys.out
    return Outcome(f"{' '.join(lines)}; keys list: {keys.out.strip()[:60]}", passed)


@case("API: a foreign Origin (multipart upload) and a foreign Host (DNS rebinding), keyless loopback server",
      "403 forbidden_origin, 403 forbidden_host; nothing planted",
      "tests/api/test_security.py::test_foreign_host_and_origin_are_refused", server=True)
def _api_origin(work: Path, env: dict[str, str]) -> Outcome:
    lines = _api_probe("keyless", [
        "httpx.post(url + '/v1/collections/default/documents', headers={'Origin': 'http://evil.example'}, "
        "files={'files': ('a.txt', b'planted', 'text/plain')}).status_code",
        "httpx.post(url + '/v1/ask', json={'question': 'q'}, headers={'Host': f'evil.example:{port}'}).status_code",
    ], env)
    return Outcome(" ".join(lines), lines == ["403", "403"])


@case("API: a 200,000-character chat question, a 12 MB JSON body with no key, a NUL question",
      "400 at once (RAG_MAX_QUESTION_CHARS), 413 before the key (RAG_MAX_REQUEST_MB), 400 'empty'",
      "tests/api/test_security.py::test_a_huge_body_is_refused_before_the_key_and_while_read", server=True)
def _api_bounds(work: Path, env: dict[str, str]) -> Outcome:
    lines = _api_probe("keyed", [
        "httpx.post(url + '/v1/chat/completions', headers=auth, json={'model': 'rerank-rag', 'messages': "
        "[{'role': 'user', 'content': 'x' * 200000}]}).status_code",
        "httpx.post(url + '/v1/ask', content=b'{\"question\": \"' + b'a' * 12000000 + b'\"}', "
        "headers={'Content-Type': 'application/json'}).status_code",
        "httpx.post(url + '/v1/ask', headers=auth, json={'question': '\\x00\\x00'}).status_code",
    ], env)
    return Outcome(" ".join(lines), lines == ["400", "413", "400"])


@case("API: four 8.8 MB rerank requests at once (1,000 documents each), then a question",
      "413 each (RAG_MAX_RERANK_CHARS) before any text is tokenized; the question then answered",
      "tests/api/test_api_server.py::test_the_text_one_rerank_sends_through_the_model_is_bounded_first", server=True)
def _api_rerank_flood(work: Path, env: dict[str, str]) -> Outcome:
    flood = ("httpx.post(url + '/v1/rerank', headers=auth, timeout=300, json={'query': 'battery', "
             "'documents': ['The battery charges in four hours. ' * 250] * 1000}).status_code")
    lines = _api_probe("keyed", [
        f"sorted(__import__('concurrent.futures').futures.ThreadPoolExecutor(4).map(lambda _: {flood}, range(4)))",
        "httpx.post(url + '/v1/ask', headers=auth, timeout=300, json={'question': "
        "'How long does the battery take to charge?'}).status_code",
    ], env)
    return Outcome(" ".join(lines), lines == ["[413, 413, 413, 413]", "200"])


@case("two writers on one embedded store: an ingest while a server holds it",
      "the ingest is refused with one line naming Chroma's server mode; the server's store unchanged",
      "tests/rag/test_two_processes.py")
def _two_writers(work: Path, env: dict[str, str]) -> Outcome:
    holder = Child(python("from rag.settings import Settings\nfrom rag.store import hold_embedded\n"
                         "hold_embedded(Settings())\nprint('holding', flush=True)\nimport sys\nsys.stdin.readline()"),
                   env, stdin=True)
    try:
        assert holder.readline(120).strip() == "holding"
        (work / "late.txt").write_text("A late document about the shed key.")
        done = run(cli("ingest", str(work / "late.txt")), env)
    finally:
        holder.send("\n")
        holder.reap(30)
    line = (done.lines or [done.err.strip()])[-1][:160]
    return Outcome(line, done.rc != 0 and "chroma run --path" in done.out + done.err)
