"""Fixtures: an API key that exists only in this test, and the local API test double."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from rlmbox.lm.bounded_http import RetryPolicy, Timeouts

from .fake_api import FakeLMServer, serve

FAST_RETRY = RetryPolicy(attempts=3, max_retry_after=0.05)
SHORT = Timeouts(connect=5.0, read=5.0)


@pytest.fixture
def key() -> str:
    return f"sk-ant-test-{secrets.token_hex(16)}"


@pytest.fixture
def api(key: str) -> Iterator[FakeLMServer]:
    yield from serve(key)
