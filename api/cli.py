"""``rerank-rag serve`` (the HTTP API) and ``rerank-rag keys create | list | revoke`` (its API keys).

    rerank-rag serve                                   # http://127.0.0.1:8000, docs at /docs
    rerank-rag keys create --name search-ui --collection default --scope read
    rerank-rag serve --host 0.0.0.0                    # other hosts only once a key exists
    rerank-rag keys list [--json] | rerank-rag keys revoke NAME_OR_ID

Without any API key the server answers everyone who can reach it, so it then binds to loopback only;
once a key exists every request needs one (``Authorization: Bearer rr_...``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from api.keys import ALL_COLLECTIONS, SCOPES


def cmd_serve(args: argparse.Namespace, settings) -> int:
    from api.keys import KeyStore
    from api.server import create_app, is_loopback

    keys = len(KeyStore(settings).keys())
    if not keys and not is_loopback(args.host):
        print(f"error: no API keys exist, so the API serves loopback only and will not bind to {args.host}: create "
              "one first (`rerank-rag keys create --name NAME --collection NAME_OR_* --scope read`), or leave "
              "--host out", file=sys.stderr)
        return 2
    if keys:
        print(f"{keys} API key(s) defined: every request needs 'Authorization: Bearer <key>'", file=sys.stderr)
    else:
        print("no API keys defined: serving on loopback only, without authentication (`rerank-rag keys create` "
              "makes every request need a key and lets --host serve other hosts)", file=sys.stderr, flush=True)
    import uvicorn

    app = create_app(settings, bind_host=args.host, workers=args.workers, queue=args.queue,
                     upload_limit_mb=args.upload_limit_mb, warm=False)
    print(f"loading models (embedder {settings.embed_model}, reranker {settings.reranker}) ...", file=sys.stderr,
          flush=True)
    from rag.store import hold_embedded

    hold_embedded(settings)  # another process's ingest into this embedded store is refused while we serve
    app.state.api.warm()  # here, so a model that cannot be had is one line on stderr, not a traceback
    logging.disable(logging.NOTSET)  # `rerank-rag` mutes library logs; a server keeps its own (access) log
    print(f"rerank-rag API on http://{args.host}:{args.port} (docs: /docs)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=5)
    return 0


def cmd_keys_create(args: argparse.Namespace, settings) -> int:
    from api.keys import KeyStore

    collection = getattr(args, "collection", None)
    if not collection:
        print(f"error: name the collection the key opens: --collection NAME, or --collection '{ALL_COLLECTIONS}' "
              "for all of them", file=sys.stderr)
        return 2
    key, token = KeyStore(settings).create(args.name, collection=collection, scope=args.scope)
    print(f"created {key.key_id} '{key.name}': scope {key.scope}, collection {key.collection}", file=sys.stderr)
    print("the key (shown only this once; store it now):", file=sys.stderr)
    print(token, flush=True)  # alone on stdout, so `KEY=$(rerank-rag keys create ...)` works
    return 0


def cmd_keys_list(args: argparse.Namespace, settings) -> int:
    from api.keys import KeyStore

    keys = KeyStore(settings).keys()
    if args.json:
        print(json.dumps([key.public() for key in keys], indent=2))
        return 0
    if not keys:
        print("no API keys (the server then serves loopback only, without authentication)")
    for key in keys:
        print(f"{key.key_id}\t{key.name}\t{key.scope}\t{key.collection}\t{key.created_at}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings) -> int:
    from api.keys import KeyStore

    key = KeyStore(settings).revoke(args.key)
    if key is None:
        print(f"error: no API key named or with the id '{args.key}' (`rerank-rag keys list` shows them)",
              file=sys.stderr)
        return 1
    print(f"revoked {key.key_id} '{key.name}' (running servers stop accepting it within a few seconds)")
    return 0


def register(subparsers, parent: argparse.ArgumentParser | None = None) -> None:
    """CLI contract (rag.cli COMMAND_MODULES): ``serve`` and ``keys``; each parser sets ``func(args, settings)``."""
    parents = [parent] if parent is not None else []
    serve = subparsers.add_parser("serve", parents=parents, help="serve the HTTP API (rerank, retrieve, ask, "
                                  "OpenAI-compatible chat, documents)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="interface to bind (default 127.0.0.1; another one needs an API key to exist)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, metavar="N",
                       help="inference threads (default: one per core, 2 to 8)")
    serve.add_argument("--queue", type=int, metavar="N",
                       help="requests that may wait for a thread before the server answers 503 (default 4 per thread)")
    serve.add_argument("--upload-limit-mb", type=float, metavar="MB",
                       help="largest upload request in all (default 10 x RAG_MAX_FILE_MB)")
    serve.set_defaults(func=cmd_serve)

    keys = subparsers.add_parser("keys", parents=parents, help="create, list or revoke the API's keys")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", parents=parents, help="create a key; prints it once",
                                description="Create an API key. The key is printed once, on stdout; the store "
                                "keeps only its sha256. --collection names the collection it opens, or '*'.")
    create.add_argument("--name", required=True, help="a name to list and revoke it by")
    create.add_argument("--scope", choices=SCOPES, default="read",
                        help="read: retrieve, ask, chat, rerank, list; write: also upload and delete; admin: all")
    create.set_defaults(func=cmd_keys_create)
    listing = actions.add_parser("list", parents=parents, help="list the keys (never the keys themselves)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_keys_list)
    revoke = actions.add_parser("revoke", parents=parents, help="revoke a key by its name or id")
    revoke.add_argument("key", metavar="NAME_OR_ID")
    revoke.set_defaults(func=cmd_keys_revoke)
