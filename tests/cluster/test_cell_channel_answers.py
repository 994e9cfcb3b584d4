"""One call, one answer: the first answer the driver sends for a call is the one the call
returns; a second for the same call id (a retried or forged delivery) is refused, not
swapped in while the waiting thread wakes."""

from __future__ import annotations

import threading

from rlmbox.cluster.cell_channel import CellChannel
from rlmbox.cluster.cell_wire import CallEvent, DriverAnswer


def test_a_second_answer_to_one_call_is_refused_and_the_first_stands() -> None:
    channel = CellChannel()
    returned: list[object] = []
    caller = threading.Thread(target=lambda: returned.append(channel.call("tool", "f", {})))
    caller.start()
    event = next(channel.events())
    assert isinstance(event, CallEvent)
    first = channel.answer(event.call_id, DriverAnswer(ok=True, value_json='"first"'))
    second = channel.answer(event.call_id, DriverAnswer(ok=True, value_json='"second"'))
    caller.join(10)
    assert first
    assert not second
    assert returned == ["first"]


def test_an_answer_for_a_call_no_one_made_is_refused() -> None:
    channel = CellChannel()
    assert not channel.answer(7, DriverAnswer(ok=True, value_json="1"))
