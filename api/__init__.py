"""rerank-rag over HTTP, so other tools can call the knowledge base and the reranker.

Presentation only, like the app: it computes nothing of its own. It serialises :class:`rag.types.AskResult`
and calls :class:`rag.pipeline.RagPipeline`, :class:`ingest.pipeline.Ingestor`,
:class:`rag.store.KnowledgeBase` and the rerankers of :mod:`rag.rerank`.

- ``server``: the FastAPI app (``create_app(settings)``): Cohere/Jina ``/v1/rerank`` (and Cohere's
  ``/v2/rerank``), TEI's ``/rerank``, ``/v1/retrieve`` and ``/v1/ask`` (the ``ask --json`` payload),
  OpenAI-compatible ``/v1/chat/completions`` and ``/v1/models``, collections and documents, ``/health``.
- ``schemas``: the request bodies (they also document the API at ``/docs``).
- ``workers``: thread pools with a bounded queue; a full queue answers 503 with ``Retry-After``.
- ``keys``: API keys, stored hashed in the store itself (so they follow a Chroma server).
- ``cli``: ``rerank-rag serve`` and ``rerank-rag keys create | list | revoke``.

``rag`` and ``ingest`` never import this package (``tests/test_layout.py``).
"""
