"""What several test modules share: paths, a free port, an OpenAI-compatible server's handler, a dataset
writer. Fixtures that use them live in conftest.py; test modules import from here, never from each other."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"
DATASETS = REPO.parent / "shared" / "datasets"
SEC_PDFS = DATASETS / "pdf_docugami_sec10q" / "pdfs"


def ingest_sample_in_small_chunks(data_dir: Path) -> Path:
    """The sample documents (data/sample) ingested in small chunks (64 tokens, ~21 of them) into ``data_dir``,
    so that a question must find its own chunk. Returns ``data_dir``."""
    from ingest.pipeline import Ingestor
    from rag.settings import Settings

    results = Ingestor(Settings(data_dir=data_dir, chunk_size=64, chunk_overlap=8)).ingest_paths([REPO / "data" / "sample"])
    assert all(r.status == "ok" for r in results), [str(r) for r in results]
    return data_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- an OpenAI-compatible server ---------------------------------------------------------------
@dataclass
class FakeOpenAI:
    url: str
    requests: list[dict] = field(default_factory=list)
    answer: str = "The refund window is 30 days [1]."
    limited_since: dict[str, float] = field(default_factory=dict)  # fail-429-retry-after-N: its first 429


def wait_for_streamlit(process, port: int, log: Path, timeout: float = 90) -> str:
    """The app's URL once its health check answers ok; fails the test with the log's tail if it exits or stalls."""
    import urllib.request

    import pytest

    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read().strip() == b"ok":
                return url
        except OSError:
            pass
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            pytest.fail(f"streamlit did not start: {log.read_text()[-3000:]}")
        time.sleep(0.2)


def stop_process(process, timeout: float = 15) -> None:
    """Terminate a server a test started; kill it if it does not exit within ``timeout`` seconds."""
    import subprocess

    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()


def run_app(target):
    """Run the app (``target``: an AppTest, or a widget just set or clicked) and check that it raised nothing."""
    at = target.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def openai_handler(state: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> None:
            self._json(status, {"error": {"message": message, "type": kind, "code": kind}}, headers)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            try:
                self._serve()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout): nothing to answer

        def _serve(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            body["_authorization"] = self.headers.get("Authorization", "")
            state.requests.append(body)
            model = body.get("model", "")
            if not self.path.endswith("/chat/completions"):
                return self._error(404, f"no route {self.path}", "not_found")
            if model == "fail-401" or body["_authorization"] == "Bearer bad-key":
                return self._error(401, "Incorrect API key provided: bad-key", "invalid_api_key")
            if model == "fail-429":
                return self._error(429, "Rate limit reached", "rate_limit_exceeded")
            if model.startswith("fail-429-retry-after-"):  # a rate-limit window of N s, as OpenAI's
                wait = float(model.removeprefix("fail-429-retry-after-"))
                since = state.limited_since.setdefault(model, time.monotonic())
                if time.monotonic() - since < wait:
                    return self._error(429, "Rate limit reached", "rate_limit_exceeded",
                                       {"Retry-After": f"{wait:g}"})
            if model == "fail-500":
                return self._error(500, "internal error", "server_error")
            if model == "hang":
                time.sleep(5)
            if body.get("stream"):
                return self._stream(model)
            reply = json.dumps({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": state.answer}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }).encode()
            if model in {"truncated-json", "truncated-body"}:
                cut = reply[: len(reply) // 2]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(cut) if model == "truncated-json" else len(reply)))
                self.end_headers()
                self.wfile.write(cut)
                self.wfile.flush()
                if model == "truncated-body":  # the connection closes before the promised length
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                return None
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def _stream(self, model: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            words = state.answer.split(" ")
            pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
            for i, piece in enumerate(pieces):
                if model == "broken-stream" and i == 2:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)  # drop mid-answer, no terminating chunk
                    self.close_connection = True
                    return
                if model == "stream-no-done" and i == 2:
                    break  # a clean end of the HTTP body, but the answer is cut off
                self._event(model, {"content": piece}, None)
            if model not in {"stream-no-done", "stream-no-finish"}:
                self._event(model, {}, "stop")
            if model not in {"stream-no-done", "stream-no-done-finished"}:
                self._chunk("data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _event(self, model: str, delta: dict, finish_reason: str | None) -> None:
            event = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
            self._chunk(f"data: {json.dumps(event)}\n\n")

        def _chunk(self, text: str) -> None:
            data = text.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return Handler



# ---- a BEIR-format dataset ------------------------------------------------------------------------
CORPUS = [
    ("d1", "Acme", "Acme Corp was founded by Ada Lovelace in 1843 in London."),
    ("d2", "Sky", "The sky is blue because of Rayleigh scattering of sunlight by air molecules."),
    ("d3", "Tea", "Green tea is made from the leaves of the Camellia sinensis plant."),
    ("d4", "Rust", "Rust is a systems programming language focused on memory safety."),
    ("d5", "Paris", "Paris is the capital of France and home of the Eiffel Tower."),
]
QUERIES = [
    ("q1", "Who founded Acme Corp?", "d1"),
    ("q0", "A question without judgements", None),
    ("q2", "Why is the sky blue?", "d2"),
    ("q3", "Which plant is green tea made from?", "d3"),
    ("q4", "What is the capital of France?", "d5"),
]


def write_dataset(root: Path, corpus=CORPUS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"id": i, "title": t, "text": x}) + "\n" for i, t, x in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t, _ in QUERIES))
    (root / "qrels.tsv").write_text("".join(f"{i}\t{d}\t1\n" for i, _, d in QUERIES if d))
    return root


# ---- a Chroma server that can be killed and started again ---------------------------------------------
class ChromaServer:
    """``chroma run`` on 127.0.0.1 over one folder, as a subprocess: start, kill -9, start again (same port)."""

    def __init__(self, path: Path, port: int | None = None) -> None:
        self.path, self.port = path, port or free_port()
        self.host = "127.0.0.1"
        self.process = None
        self.log = path.parent / f"{path.name}.chroma.log"

    def start(self, timeout_s: float = 60) -> ChromaServer:
        import shutil
        import subprocess
        import sys
        import urllib.request

        chroma = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [chroma, "run", "--host", self.host, "--port", str(self.port), "--path", str(self.path)],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout_s
        while True:
            try:
                urllib.request.urlopen(f"http://{self.host}:{self.port}/api/v2/heartbeat", timeout=1)
                return self
            except OSError:
                if self.process.poll() is not None or time.time() > deadline:
                    self.kill()
                    raise RuntimeError(f"chroma server did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: no goodbye to the clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


# ---- generated documents (issue 23: OCR, running lines) ------------------------------------------
def text_pdf(pages: list[list[str | tuple[str, int] | tuple[str, int, bool]]], size: tuple[float, float] = (595, 842),
             title: str | None = None) -> bytes:
    """A PDF with a text layer: each page a list of lines (Helvetica 11 pt, top to bottom; a (line, points) pair
    in that size: a cover's name; a (line, points, True) triple in Helvetica-Bold: a heading), written by pypdf;
    ``size``: each page's width and height in points (A4 by default); ``title``: its metadata title."""
    import io

    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    fonts = DictionaryObject({NameObject(key): DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject(face)}) for key, face in (("/F1", "/Helvetica"), ("/F2", "/Helvetica-Bold"))})
    for lines in pages:
        page = writer.add_blank_page(width=size[0], height=size[1])
        ops = [b"BT /F1 11 Tf 14 TL 60 %d Td" % int(size[1] - 42)]
        for line in lines:
            line, points, bold = (*line, False)[:3] if isinstance(line, tuple) else (line, 11, False)
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(b"/F%d %d Tf (" % (2 if bold else 1, points) + escaped.encode("latin-1") + b") Tj T*")
        ops.append(b"ET")
        content = DecodedStreamObject()
        content.set_data(b"\n".join(ops))
        page[NameObject("/Contents")] = writer._add_object(content.flate_encode())
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
    if title:
        writer.add_metadata({"/Title": title})
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def quarterly_filing(company: str, sales: str, growth: str, quarter: str = "Q1 2024",
                     period_end: str = "March 31, 2024") -> bytes:
    """A quarterly filing: a cover naming the company in large type, then pages that never name it but in their
    running footer, as a 10-Q's pages say "net sales" without saying whose."""
    footer = f"{company.split()[0]} | {quarter} Form 10-Q |"
    cover = [(company, 22), ("FORM 10-Q", 16), f"For the quarterly period ended {period_end}",
             "Commission file number 000-12345", "Indicate by check mark whether the registrant has filed all reports."]
    body = [
        ["PART I. FINANCIAL INFORMATION", "Item 2. Discussion and Analysis",
         f"Total net sales were ${sales} million for the quarter, up {growth} percent from the prior year.",
         "Sales grew in every region, led by the domestic segment.", f"{footer} 2"],
        ["Note 3 - Inventories", "Inventories are stated at the lower of cost and net realizable value.",
         "The company reviews its inventory for obsolescence every quarter.", f"{footer} 3"],
        ["Item 4. Controls and Procedures", "Disclosure controls were effective as of the end of the period.",
         "No change in internal control occurred during the quarter.", f"{footer} 4"],
    ]
    return text_pdf([cover, *body])


def text_image(lines: list[str], size: int = 40, width: int = 1600):
    """A white page image with ``lines`` in black DejaVu Sans (Debian's fonts-dejavu-core): a scan to OCR."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype("DejaVuSans.ttf", size)
    image = Image.new("RGB", (width, 120 + int(size * 1.6) * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((60, 60 + int(size * 1.6) * i), line, fill="black", font=font)
    return image


# ---- multi-frame TIFFs (issue 36: bad frames, long OCR jobs) ---------------------------------------------
def tiff(*frames, compression: str = "tiff_deflate") -> bytes:
    """A real multi-frame TIFF (a fax, a scanner's batch): each image one frame."""
    import io

    buffer = io.BytesIO()
    frames[0].save(buffer, "TIFF", save_all=True, append_images=list(frames[1:]), compression=compression)
    return buffer.getvalue()


def fax_with_a_huge_second_frame() -> bytes:
    """Frame 1 a cover sheet, frame 2 15,000 px square (225 M pixels): 15 kB as a Group 4 TIFF."""
    from PIL import Image

    cover = text_image(["Fax cover sheet: the spare parts order."]).convert("1")
    return tiff(cover, Image.new("1", (15_000, 15_000), 1), compression="group4")


def scan_frames(n: int) -> list:
    """``n`` page images of one line each, "Scanned page i: ...", to OCR."""
    return [text_image([f"Scanned page {i}: the depot opens at {i % 12 + 1} o'clock."], width=900)
            for i in range(1, n + 1)]


def serve_api(data_dir: Path, env: dict[str, str], *args: str, timeout_s: float = 240):
    """A real `rerank-rag serve` on a free loopback port over ``data_dir`` (its log in ``data_dir/server.log``),
    once /health answers: (process, url, log path). Fails the test with the log's end when it does not start."""
    import subprocess
    import sys

    import httpx
    import pytest

    port = free_port()
    log = data_dir / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--data-dir", str(data_dir),
                                    "--port", str(port), *args], cwd=REPO, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url, log
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            pytest.fail(f"the API server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)

