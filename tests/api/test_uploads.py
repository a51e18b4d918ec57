"""Issue 36 §4-5 over real HTTP: a TIFF with a huge frame fails alone in an upload (per-file results, no 500);
uploads have workers of their own, so one client's long OCR job never starves another's small upload; a full
upload queue answers 503 with Retry-After; a client that hangs up cancels its upload's work."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import fax_with_a_huge_second_frame, scan_frames, serve_api, stop_process, tiff


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A keyless loopback `rerank-rag serve`: two upload workers, no upload queue."""
    data_dir = tmp_path_factory.mktemp("uploads-store")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_") and not k.startswith("OPENAI_")}
    env.update(RAG_UPLOAD_WORKERS="2", RAG_UPLOAD_QUEUE="0", RAG_OCR_MAX_SECONDS="3600", HF_HUB_OFFLINE="1")
    process, url, log = serve_api(data_dir, env)
    yield url
    stop_process(process)
    assert "Traceback" not in log.read_text(errors="replace")


def upload(url: str, *files: tuple[str, bytes], timeout: float = 300) -> httpx.Response:
    return httpx.post(f"{url}/v1/collections/default/documents", files=[("files", f) for f in files], timeout=timeout)


class RawUpload:
    """An upload sent over a plain socket that then waits for its answer, like a client that may hang up."""

    def __init__(self, url: str, name: str, data: bytes) -> None:
        request = httpx.Request("POST", f"{url}/v1/collections/default/documents", files=[("files", (name, data))])
        body = request.read()
        host = request.url.host
        head = (f"POST {request.url.raw_path.decode()} HTTP/1.1\r\nHost: {host}:{request.url.port}\r\n"
                f"Content-Type: {request.headers['content-type']}\r\nContent-Length: {len(body)}\r\n\r\n")
        self.socket = socket.create_connection((host, request.url.port))
        self.socket.sendall(head.encode() + body)

    def answered(self) -> bool:
        self.socket.setblocking(False)
        try:
            return bool(self.socket.recv(1, socket.MSG_PEEK))
        except BlockingIOError:
            return False
        finally:
            self.socket.setblocking(True)

    def hang_up(self) -> None:
        self.socket.close()


def ingest_pool(url: str) -> int:
    return httpx.get(f"{url}/health", timeout=30).json()["pools"]["ingest"]["active"]


def wait_for(condition, what: str, timeout_s: float = 300) -> None:  # a guard against a hang, not a measure
    deadline = time.time() + timeout_s
    while not condition():
        assert time.time() < deadline, f"never: {what}"
        time.sleep(0.3)


def test_a_tiff_with_a_huge_frame_fails_alone_in_an_upload(server: str) -> None:
    reply = upload(server, ("fax.tif", fax_with_a_huge_second_frame()),
                   ("memo.txt", b"The memo after the fax: the workshop closes at noon."))
    assert reply.status_code == 200, reply.text
    fax, memo = reply.json()["results"]
    assert fax["status"] == "failed" and "frame 2 of 2 is an image of 15,000 x 15,000 pixels" in fax["reason"]
    assert memo["status"] == "ok"
    assert httpx.delete(f"{server}/v1/collections/default/documents/memo.txt", timeout=60).status_code == 200


def test_a_long_ocr_upload_never_starves_another_and_a_client_that_hangs_up_cancels_its_work(server: str) -> None:
    long_scan = tiff(*scan_frames(60))
    first = RawUpload(server, "long-a.tif", long_scan)
    try:
        wait_for(lambda: ingest_pool(server) == 1, "the long upload started")
        small = upload(server, ("small.txt", b"A small upload: the shop sells bells."))
        assert small.status_code == 200 and small.json()["results"][0]["status"] == "ok", small.text
        assert not first.answered() and ingest_pool(server) == 1  # answered while the long job still runs

        second = RawUpload(server, "long-d.tif", long_scan)
        wait_for(lambda: ingest_pool(server) == 2, "the second long upload started")
        full = upload(server, ("late.txt", b"Too late: both upload workers are busy."))
        assert full.status_code == 503 and full.headers["retry-after"].isdigit(), full.text
        assert full.json()["error"]["type"] == "overloaded"

        second.hang_up()  # its ingest stops at its next page, long before the first one ends
        wait_for(lambda: ingest_pool(server) == 1, "the hung-up upload's work stopped")
        assert not first.answered()  # the first, started earlier and as long, still runs
    finally:
        first.hang_up()
    wait_for(lambda: ingest_pool(server) == 0, "the first upload's work stopped once its client hung up")
    listed = httpx.get(f"{server}/v1/collections/default/documents", timeout=60).json()["data"]
    assert sorted(record["source"] for record in listed) == ["small.txt"]  # neither long scan was committed
