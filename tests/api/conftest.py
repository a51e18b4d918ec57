"""One live API server for the tests of this folder that ask for ``server`` (tests/api/live_server.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.live_server import Server, SwitchableLlm, live_server, switchable_llm


@pytest.fixture(scope="session")
def llm() -> Iterator[SwitchableLlm]:
    yield from switchable_llm()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, llm: SwitchableLlm) -> Iterator[Server]:
    yield from live_server(tmp_path_factory.mktemp("api-store"), llm)
