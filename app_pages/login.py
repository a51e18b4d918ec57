"""The app behind the API's keys (api/keys.py): who may use this browser session, and which collections.

The rule is the API's (``rerank-rag serve``): with no key in the store and the app bound to loopback, it is
open, as it always was (``make run``); once a key exists, or when the app is bound to any other address,
every browser session signs in with a key once. A non-loopback bind with no key serves nothing but the
command that creates one, since anyone who reaches the address could otherwise read and change every
document. The session keeps the key's sha256 (as the store does), never the key: each run looks the
hash up again (KeyStore re-reads the store every 2 s), so a revoked key stops working within seconds.
"""

from __future__ import annotations

import sys

import streamlit as st
from pydantic import ValidationError

from api.guards import ServedHosts, allowed_host_names
from api.keys import ApiKey, KeyStore, hash_token
from api.service import is_loopback
from app_pages import state
from app_pages.rendering import escape_md
from rag.settings import Settings
from rag.store import StoreError

KEY_HASH = "login_key_hash"  # session_state key: sha256 of this session's key (the key itself is never kept)
CREATE_KEY = "rerank-rag keys create --name NAME --collection NAME_OR_* --scope write"


@st.cache_resource(show_spinner=False)
def _key_store(data_dir: str, chroma_host: str | None, chroma_port: int) -> KeyStore:
    """One KeyStore per store for the server's life, so its 2 s cache spares the store a read per rerun."""
    return KeyStore(Settings(data_dir=data_dir, chroma_host=chroma_host, chroma_port=chroma_port))


def key_store(settings: Settings) -> KeyStore:
    return _key_store(str(settings.data_dir), settings.chroma_host, settings.chroma_port)


def bind_address() -> str:
    """The address Streamlit serves on; '' (its default without our config file) means every interface."""
    return str(st.get_option("server.address") or "").strip()


def served_host_names() -> ServedHosts:
    """The Host names this app answers, by the API's rule: loopback, the bound address, RAG_ALLOWED_HOSTS. With
    invalid settings only the first two, until they are fixed (the page then says what is wrong)."""
    try:
        configured = Settings().allowed_hosts
    except ValidationError:
        configured = ""
    return allowed_host_names(configured, bind_address())


@st.cache_resource(show_spinner=False)
def _last_read() -> dict[str, dict[str, ApiKey]]:
    """The keys of each store as last read, for the runs during which its server is unreachable."""
    return {}


@st.cache_resource(show_spinner=False)
def _said_on_stderr(message: str) -> bool:
    print(f"error: {message}", file=sys.stderr, flush=True)  # once per server: the operator reads the console
    return True


def gate(settings: Settings) -> ApiKey | None:
    """This session's key (None: the app is open); draws the sign-in form or the refusal and stops otherwise."""
    address = bind_address()
    loopback = bool(address) and is_loopback(address)
    where_keys = f"{settings.data_dir}|{settings.chroma_host}|{settings.chroma_port}"
    try:
        keys = _last_read()[where_keys] = key_store(settings).table()
    except StoreError as error:
        # The store went away (a Chroma server down): the keys last read stand, so that each page says what
        # failed; with none ever read nobody is let in, since nobody can be checked.
        if where_keys not in _last_read():
            st.error(f"The API keys cannot be read, so nobody can sign in: {escape_md(str(error))}")
            st.stop()
        keys = _last_read()[where_keys]
    if not keys:
        st.session_state.pop(KEY_HASH, None)
        if loopback:
            return None
        where = address or "every network interface"
        message = ("This app is bound to {where}, beyond this machine, and no API key exists, so it serves "
                   f"nothing: create a key first (`{CREATE_KEY}`) and sign in with it, or bind to loopback "
                   "(`streamlit run app.py --server.address 127.0.0.1`).")
        _said_on_stderr(message.format(where=where))
        st.title("rerank-rag")
        st.error(message.format(where=escape_md(where)), icon=":material/lock:")  # the commands as code
        st.stop()
    key = keys.get(st.session_state.get(KEY_HASH, ""))
    if key is not None:
        return key
    expired = KEY_HASH in st.session_state  # it was valid: revoked since
    if expired:
        sign_out()
    _form(keys, expired)
    st.stop()


def sign_out() -> None:
    """Forget the whole session, not only its key: its chat, results and settings were had with that key."""
    st.session_state.clear()


def _form(keys: dict[str, ApiKey], expired: bool) -> None:
    st.title("rerank-rag")
    st.caption("This app needs an API key: the same keys as the HTTP API (`rerank-rag keys create`).")
    if expired:
        st.warning("This session's key was revoked: sign in with another one.", icon=":material/key_off:")
    # clear_on_submit: the key leaves the widget (and the session) with the run that reads it
    with st.form("login", clear_on_submit=True):
        token = st.text_input("API key", type="password", placeholder="rr_…", autocomplete="off")
        signed_in = st.form_submit_button("Sign in", type="primary")
    if signed_in:
        token_hash = hash_token(token.strip())
        if token_hash in keys:
            st.session_state[KEY_HASH] = token_hash
            st.rerun()
        st.error("That is not a valid key (unknown, revoked or mistyped).", icon=":material/error:")


def sidebar(key: ApiKey | None) -> None:
    """Who this session is signed in as (the key's name, never the key) and a way to sign out."""
    if key is None:
        return
    opens = "every collection" if key.collection == "*" else f"the collection '{key.collection}'"
    st.caption(escape_md(f"Signed in with the key '{key.name}': {key.scope} access to {opens}."))
    st.button("Sign out", icon=":material/logout:", on_click=sign_out)


def restrict(key: ApiKey | None) -> None:
    """Keep this session on a collection its key opens (a key for one collection: that one)."""
    state.set_access(key)
    if key is not None and key.collection != "*":
        st.session_state[state.COLLECTION] = key.collection
