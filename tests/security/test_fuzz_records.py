"""A fuzzed loader (issue 12, item 8): stored records corrupted at random.

Each example damages one stored record of a real store (bits flipped,
truncated, bytes spliced in, or replaced by random bytes), with its checksum
kept or cleared (a record written before checksums, or by GC3Pie), then reads
the store through ``load`` or a query's ``objects()`` in a fresh store object.
Every outcome must be the original object (what a checksum guards: a record
with a checksum never loads as something else) or a LoadError; never another
exception type, and never a hang (an alarm fails the example after
``HANG_SECONDS``). Unchecked records may load as something else (that is what
checksums are for), but still only ever raise a LoadError.

Examples per backend: ``TYPEDSTORE_FUZZ_EXAMPLES``, else 30 (300 with ``TYPEDSTORE_STRESS=full``).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.stress import size
from typedstore import LoadError, make_store

from .samples import Sample, samples
from .storage import read_raw, write_raw

EXAMPLES = size(30, 300, "TYPEDSTORE_FUZZ_EXAMPLES")
HANG_SECONDS = 20


class Hang(Exception):
    """The load did not end within HANG_SECONDS."""


@contextmanager
def alarm(seconds: float) -> Iterator[None]:
    def ring(_signum: int, _frame: Any) -> None:
        raise Hang(f"no outcome within {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@st.composite
def corruptions(draw: st.DrawFn, size: int) -> tuple[str, Any]:
    kind = draw(st.sampled_from(["bit", "bit", "flip", "truncate", "splice", "random"]))
    if kind == "bit":  # one bit: most often a valid pickle of other content
        return "flip", [(draw(st.integers(0, size - 1)), 1 << draw(st.integers(0, 7)))]
    if kind == "flip":
        flips = draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(1, 255)),
                              min_size=1, max_size=4))
        return kind, flips
    if kind == "truncate":
        return kind, draw(st.integers(0, size - 1))
    if kind == "splice":
        return kind, (draw(st.integers(0, size)), draw(st.binary(min_size=1, max_size=16)))
    return kind, draw(st.binary(max_size=400))


def corrupt(data: bytes, how: tuple[str, Any]) -> bytes:
    kind, arg = how
    if kind == "flip":
        out = bytearray(data)
        for at, mask in arg:
            out[at % len(out)] ^= mask
        return bytes(out)
    if kind == "truncate":
        return data[:arg]
    if kind == "splice":
        at, extra = arg
        return data[:at] + extra + data[at:]
    return bytes(arg)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(data=st.data())
def test_corrupted_records_load_as_they_were_or_raise_load_error(
        store_url: str, data: st.DataObject) -> None:
    with make_store(store_url) as writer:
        if not writer.list():
            for obj in samples():
                writer.save(obj)
        ids = sorted(writer.list(), key=str)
        raw = {id_: read_raw(writer, id_) for id_ in ids}
    expected = {}
    with make_store(store_url, allowed_classes=[Sample]) as reader:
        for id_ in ids:
            expected[id_] = reader.load(id_).content()

    target = data.draw(st.sampled_from(ids), label="record")
    payload, stored_checksum, _ = raw[target]
    how = data.draw(corruptions(len(payload)), label="corruption")
    unchecked = data.draw(st.sampled_from([False, False, True]), label="checksum cleared")
    path = data.draw(st.sampled_from(["load", "query"]), label="path")
    damaged = corrupt(payload, how)
    with make_store(store_url) as probe:
        write_raw(probe, target, data=damaged,
                  checksum=None if unchecked else stored_checksum)
    try:
        with make_store(store_url, allowed_classes=[Sample]) as reader, \
                alarm(HANG_SECONDS):
            try:
                if path == "load":
                    loaded = {target: reader.load(target)}
                else:
                    loaded = {obj.persistent_id: obj for obj in reader.query().objects()}
            except LoadError:
                return
            for id_, obj in loaded.items():
                if unchecked and id_ == target:
                    continue  # may be anything: nothing guards an unchecked record
                if not unchecked or damaged == payload:
                    assert isinstance(obj, Sample) and obj.content() == expected[id_], (
                        f"record {id_} loaded as something else")
    finally:
        with make_store(store_url) as probe:
            write_raw(probe, target, data=payload, checksum=stored_checksum)
