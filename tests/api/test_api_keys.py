"""API keys: stored hashed in the store, scopes ordered, a short cache, and the policy of `serve`
(without any key: loopback only, and it says so)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from api.keys import KEYS_COLLECTION, KeyStore, hash_token, scope_includes
from api.server import Api, ApiError, is_loopback
from rag.settings import Settings
from rag.store import open_client
from tests.helpers import REPO, free_port

CLI = str(Path(sys.executable).parent / "rerank-rag")


def test_a_key_is_stored_only_as_its_hash(settings: Settings) -> None:
    store = KeyStore(settings)
    key, token = store.create("ui", collection="default", scope="read")
    assert token.startswith("rr_") and len(token) > 40
    assert store.lookup(token) == key
    assert store.lookup(token + "x") is None and store.lookup("not-a-token") is None
    raw = open_client(settings).get_collection(KEYS_COLLECTION).get(include=["metadatas", "documents"])
    assert raw["ids"] == [hash_token(token)]
    assert token not in str(raw)


def test_names_are_unique_scopes_known_and_revoke_takes_a_name_or_an_id(settings: Settings) -> None:
    store = KeyStore(settings)
    first, token1 = store.create("one", collection="*", scope="write")
    second, token2 = store.create("two", collection="docs", scope="admin")
    with pytest.raises(ValueError, match="exists already"):
        store.create("one", collection="*", scope="read")
    with pytest.raises(ValueError, match="scope"):
        store.create("three", collection="*", scope="owner")
    with pytest.raises(ValueError, match="collection"):
        store.create("three", collection=" ", scope="read")
    assert [k.name for k in store.keys()] == ["one", "two"]
    assert store.revoke(first.key_id) == first
    assert store.revoke("two") == second
    assert store.revoke("two") is None
    assert store.lookup(token1) is None and store.lookup(token2) is None and not store.any()


def test_scopes_are_ordered_and_keys_open_their_collections() -> None:
    assert scope_includes("admin", "write") and scope_includes("write", "read") and scope_includes("read", "read")
    assert not scope_includes("read", "write") and not scope_includes("write", "admin")


def test_another_process_sees_new_and_revoked_keys_after_the_cache_expires(settings: Settings) -> None:
    server_side = KeyStore(settings, ttl_s=0.3)
    assert not server_side.any()
    _, token = KeyStore(settings).create("late", collection="*", scope="read")
    assert server_side.lookup(token) is None  # still the cached "no keys"
    time.sleep(0.35)
    assert server_side.lookup(token) is not None
    KeyStore(settings).revoke("late")
    time.sleep(0.35)
    assert server_side.lookup(token) is None


def test_without_keys_only_a_loopback_server_is_open(settings: Settings) -> None:
    local, public = Api(settings, bind_host="127.0.0.1"), Api(settings, bind_host="0.0.0.0")
    assert local.authorize(None, "admin") is None
    with pytest.raises(ApiError) as refused:
        public.authorize(None, "read")
    assert refused.value.status == 401 and "no API keys" in refused.value.message

    _, token = KeyStore(settings).create("reader", collection="default", scope="read")
    for api in (local, public):
        api.keys._forget()
        with pytest.raises(ApiError) as missing:
            api.authorize(None, "read")
        assert missing.value.status == 401
        assert api.authorize(token, "read").name == "reader"
        with pytest.raises(ApiError) as scope:
            api.authorize(token, "write")
        assert scope.value.status == 403
        with pytest.raises(ApiError) as elsewhere:
            api.check_opens(api.authorize(token, "read"), "other")
        assert elsewhere.value.status == 403
    for api in (local, public):
        api.shutdown()


def test_loopback_hosts() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.5", "example.com"]))


def test_serve_refuses_another_interface_without_keys(tmp_path: Path) -> None:
    done = subprocess.run([CLI, "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "store")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "no API keys exist" in done.stderr and "rerank-rag keys create" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_without_keys_says_it_serves_loopback_only(tmp_path: Path) -> None:
    process = subprocess.Popen([CLI, "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "store")],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stderr.readline()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert first.startswith("no API keys defined: serving on loopback only")


def test_keys_create_needs_a_collection_and_prints_the_key_once(tmp_path: Path) -> None:
    store = ["--data-dir", str(tmp_path / "store")]
    missing = subprocess.run([CLI, "keys", "create", "--name", "x", *store], cwd=REPO, capture_output=True,
                             text=True, timeout=300)
    assert missing.returncode == 2 and "--collection" in missing.stderr
    made = subprocess.run([CLI, "keys", "create", "--name", "x", "--collection", "*", "--scope", "write", *store],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("rr_") and "shown only this once" in made.stderr and token not in made.stderr
    listed = subprocess.run([CLI, "keys", "list", "--json", *store], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert '"name": "x"' in listed.stdout and '"scope": "write"' in listed.stdout and "rr_" not in listed.stdout
