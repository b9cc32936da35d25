"""The driver's writer thread: batches written one at a time, in order, errors raised in
the loop."""

from __future__ import annotations

import threading
import time

import pytest

from nnchain.runner.flusher import Batch, Flusher


def batch_of(number: int) -> Batch:
    return Batch(decisions=[{"number": number}])


def test_batches_are_written_one_at_a_time_in_the_order_handed_over():
    written, writing = [], threading.Lock()

    def write(batch: Batch) -> None:
        assert writing.acquire(blocking=False), "two batches written at once"
        time.sleep(0.02)
        written.append(batch.decisions[0]["number"])
        writing.release()

    flusher = Flusher(write)
    for number in range(5):
        flusher.hand(batch_of(number))
    flusher.wait()
    assert written == [0, 1, 2, 3, 4]
    assert not flusher.busy
    flusher.close()


def test_the_loop_goes_on_while_a_batch_is_written():
    release = threading.Event()
    flusher = Flusher(lambda batch: release.wait(10))
    flusher.hand(batch_of(0))
    assert flusher.busy  # handed over and returned at once: the loop is free
    release.set()
    flusher.wait()
    assert not flusher.busy
    flusher.close()


def test_a_write_error_is_raised_in_the_loop_and_stops_the_writing():
    written = []

    def write(batch: Batch) -> None:
        number = batch.decisions[0]["number"]
        if number == 1:
            raise RuntimeError("the store refused")
        written.append(number)

    flusher = Flusher(write)
    flusher.hand(batch_of(0))
    flusher.hand(batch_of(1))
    with pytest.raises(RuntimeError, match="the store refused"):
        flusher.wait()
    with pytest.raises(RuntimeError, match="the store refused"):
        flusher.check()
    with pytest.raises(RuntimeError, match="the store refused"):
        flusher.hand(batch_of(2))
    flusher.close()
    assert written == [0]


def test_close_writes_what_was_handed_over_first():
    written = []
    flusher = Flusher(lambda batch: (time.sleep(0.05), written.append(batch)))
    batch = batch_of(7)
    flusher.hand(batch)
    flusher.close()
    assert written == [batch]


def test_an_empty_batch_says_so_and_counts_its_values():
    from nnchain.tracking.metrics import Block

    batch = Batch()
    assert batch.empty()
    batch.add(Block("run", 0, {"a": [1.0, 2.0], "b": [3.0, 4.0]}, [1, 2]))
    assert batch.values == 4 and not batch.empty()
