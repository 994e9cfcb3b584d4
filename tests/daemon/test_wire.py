"""Error types survive the wire: the status the server picks and the class the client
raises are two halves of one table."""

from __future__ import annotations

import pytest

from rlmbox import errors
from rlmbox.daemon.wire import ENGINE_STATUS, exception_for, status_for


@pytest.mark.parametrize("name", sorted(ENGINE_STATUS))
def test_every_engine_error_comes_back_as_its_own_class(name: str) -> None:
    cls = getattr(errors, name)
    status, kind = status_for(cls("boom"))
    assert kind == name
    assert 400 <= status < 600
    again = exception_for(status, kind, "boom")
    assert type(again) is cls
    assert str(again) == "boom"


def test_unknown_and_foreign_types_become_daemon_errors() -> None:
    for kind in ("NotFound", "Unauthorized", "RlmboxError", "ValueError", "DaemonError", ""):
        error = exception_for(418, kind, "nope")
        assert type(error) is errors.DaemonError
        assert error.status == 418
        assert error.type == kind


def test_daemon_errors_keep_their_status_and_type() -> None:
    assert status_for(errors.DaemonError("x", status=404, type="NotFound")) == (404,
                                                                               "NotFound")
    assert status_for(errors.DaemonError("x")) == (400, "InvalidRequest")
