"""Ids (``Id``, ``IntId``), id factories and the durable ``FileCounter`` sequence."""

from __future__ import annotations

import copy
import multiprocessing
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from typedstore import FilesystemStore, Id, IdFactory, IntId, JobIdFactory
from typedstore.ids import BlockSequence, FileCounter

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


class Application:
    pass


class Recorder:
    """A next_id_fn that hands out consecutive numbers and records every call."""

    def __init__(self, start: int = 1, as_list: bool = False) -> None:
        self.next = start
        self.calls: list[int] = []
        self.as_list = as_list

    def __call__(self, n: int = 1) -> int | Iterable[int]:
        self.calls.append(n)
        first, self.next = self.next, self.next + n
        return list(range(first, first + n)) if self.as_list else first


# ---------------------------------------------------------------- Id


def test_id_is_prefix_dot_number() -> None:
    id_ = Id("job", 12)
    assert isinstance(id_, str)
    assert id_ == "job.12"
    assert str(id_) == "job.12"
    assert id_._prefix == "job"
    assert id_._seqno == 12


def test_id_takes_gc3pie_signature() -> None:
    # gc3libs.persistence.idfactory.Id(prefix, seqno), 2.6.8
    assert Id("Application", 3) == "Application.3"
    assert Id(prefix="Application", seqno=4) == "Application.4"
    assert Id("job", 7).__getnewargs__() == ("job", 7)


def test_id_from_single_string() -> None:
    id_ = Id("Application.7")
    assert isinstance(id_, Id)
    assert (id_._prefix, id_._seqno) == ("Application", 7)


def test_id_needs_a_number() -> None:
    with pytest.raises(TypeError):
        Id(Application())
    with pytest.raises(TypeError):
        Id("job")
    with pytest.raises(TypeError):
        Id("job", True)
    with pytest.raises(TypeError):
        Id("job", 1.5)


@pytest.mark.parametrize(
    ("text", "prefix", "seqno"),
    [("job.1", "job", 1), ("Application.42", "Application", 42), ("a.b.c.9", "a.b.c", 9),
     ("x.0", "x", 0)],
)
def test_id_parse(text: str, prefix: str, seqno: int) -> None:
    id_ = Id.parse(text)
    assert isinstance(id_, Id)
    assert id_ == text
    assert (id_._prefix, id_._seqno) == (prefix, seqno)


@pytest.mark.parametrize("text", ["job", "job.", "job.x", "job.1a", "", "job.-1"])
def test_id_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError, match=r"PREFIX\.N"):
        Id.parse(text)


def test_id_orders_by_number_within_prefix() -> None:
    nine, ten, hundred = Id("job.9"), Id("job.10"), Id("job.100")
    assert nine < ten < hundred
    assert hundred > ten > nine
    assert nine <= Id("job.9") <= ten
    assert ten >= nine
    assert sorted([hundred, nine, ten]) == ["job.9", "job.10", "job.100"]
    assert max([nine, hundred, ten]) == "job.100"
    assert str(nine) > str(ten)  # the plain strings order the other way


def test_id_orders_by_prefix_first() -> None:
    assert Id("a.10") < Id("b.2")
    assert sorted([Id("b.1"), Id("a.10"), Id("a.2")]) == ["a.2", "a.10", "b.1"]


def test_id_equals_and_hashes_like_its_string() -> None:
    id_ = Id("job", 5)
    assert id_ == "job.5"
    assert "job.5".__eq__(id_) is True  # the reflected comparison
    assert id_ != "job.6"
    assert hash(id_) == hash("job.5")
    assert id_ == Id("job.5")
    assert "job.5" in {id_}
    assert id_ in {"job.5"}
    assert {"job.5": "x"}[id_] == "x"
    assert {id_: "y"}["job.5"] == "y"
    assert len({id_, "job.5", Id("job.5")}) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_id_pickles_equal(protocol: int) -> None:
    id_ = Id("Application", 10)
    back = pickle.loads(pickle.dumps(id_, protocol))
    assert type(back) is Id
    assert back == id_
    assert hash(back) == hash(id_)
    assert Id("Application.9") < back < Id("Application.11")
    assert (back._prefix, back._seqno) == ("Application", 10)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_id_pickles_inside_containers(protocol: int) -> None:
    id_ = Id("job.3")
    back = pickle.loads(pickle.dumps({"ids": [id_, id_], id_: 1}, protocol))
    assert back == {"ids": ["job.3", "job.3"], "job.3": 1}
    assert all(type(x) is Id for x in back["ids"])


def test_id_copies() -> None:
    id_ = Id("job.8")
    for other in (copy.copy(id_), copy.deepcopy(id_)):
        assert type(other) is Id
        assert other == id_
        assert other > Id("job.7")


def test_id_repr_names_the_class() -> None:
    assert repr(Id("job.8")) == "Id('job.8')"


# ---------------------------------------------------------------- IntId


def test_intid_is_int_like() -> None:
    id_ = IntId(7)
    assert isinstance(id_, int)
    assert id_ == 7
    assert hash(id_) == hash(7)
    assert id_ + 1 == 8
    assert id_ < IntId(10)
    assert {7: "x"}[id_] == "x"
    assert id_ in {7}
    assert repr(id_) == "IntId(7)"


def test_intid_takes_gc3pie_signature() -> None:
    # gc3libs.persistence.sql.IntId(prefix, seqno), 2.6.8: the prefix is ignored
    id_ = IntId("ignored", 5)
    assert type(id_) is IntId
    assert id_ == 5
    assert IntId(None, 0) == 0
    assert IntId(prefix="p", seqno=12) == 12
    assert id_.__getnewargs__() == (None, 5)


@pytest.mark.parametrize("bad", [None, True, 1.9, "3"])
def test_intid_needs_an_integer(bad: object) -> None:
    with pytest.raises(TypeError):
        IntId(bad)
    with pytest.raises(TypeError):
        IntId(None, bad)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_intid_pickles_equal(protocol: int) -> None:
    back = pickle.loads(pickle.dumps(IntId(123456789012), protocol))
    assert type(back) is IntId
    assert back == 123456789012


# ---------------------------------------------------------------- IdFactory


def test_factory_uses_class_name_when_prefix_is_none() -> None:
    factory = IdFactory(next_id_fn=Recorder(start=5))
    assert factory.new(Application()) == "Application.5"
    assert factory.new({}) == "dict.6"
    assert type(factory.new(Application())) is Id


def test_factory_with_prefix() -> None:
    factory = IdFactory(prefix="task", next_id_fn=Recorder())
    assert [factory.new(Application()), factory.new(3)] == ["task.1", "task.2"]


def test_factory_with_intid_class() -> None:
    factory = IdFactory(next_id_fn=Recorder(start=40), id_class=IntId)
    first, second = factory.new(Application()), factory.new(Application())
    assert (type(first), first, second) == (IntId, 40, 41)


def test_new_calls_sequence_once_per_id() -> None:
    seq = Recorder()
    factory = IdFactory(next_id_fn=seq)
    ids = [factory.new(Application()) for _ in range(3)]
    assert ids == ["Application.1", "Application.2", "Application.3"]
    assert seq.calls == [1, 1, 1]


@pytest.mark.parametrize("as_list", [False, True], ids=["returns-first", "returns-iterable"])
def test_reserve_makes_one_call_and_new_uses_reserved_numbers(as_list: bool) -> None:
    seq = Recorder(start=10, as_list=as_list)
    factory = IdFactory(prefix="job", next_id_fn=seq)
    factory.reserve(4)
    assert seq.calls == [4]
    ids = [factory.new(Application()) for _ in range(4)]
    assert ids == ["job.10", "job.11", "job.12", "job.13"]
    assert seq.calls == [4]  # still one call
    assert factory.new(Application()) == "job.14"
    assert seq.calls == [4, 1]


def test_reserve_keeps_earlier_reservations_first() -> None:
    seq = Recorder()
    factory = IdFactory(prefix="j", next_id_fn=seq)
    factory.reserve(2)
    assert factory.new(None) == "j.1"
    factory.reserve(2)
    assert [factory.new(None) for _ in range(3)] == ["j.2", "j.3", "j.4"]
    assert seq.calls == [2, 2]


def test_sequence_returning_a_generator_works() -> None:
    def evens(n: int) -> Iterable[int]:
        return (2 * k for k in range(1, n + 1))

    factory = IdFactory(prefix="e", next_id_fn=evens)
    factory.reserve(3)
    assert [factory.new(None) for _ in range(3)] == ["e.2", "e.4", "e.6"]


def test_sequence_returning_wrong_count_is_an_error() -> None:
    factory = IdFactory(prefix="e", next_id_fn=lambda n: [1, 2])
    with pytest.raises(ValueError, match="3"):
        factory.reserve(3)


def test_job_id_factory() -> None:
    factory = JobIdFactory(next_id_fn=Recorder(start=3))
    assert factory.new(Application()) == "job.3"
    assert factory.new({}) == "job.4"


def test_job_id_factory_in_a_store(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "jobs", idfactory=JobIdFactory())
    ids = [store.save(Application()) for _ in range(3)]
    assert all(isinstance(i, Id) and i._prefix == "job" for i in ids)
    assert sorted(i._seqno for i in ids) == [i._seqno for i in ids]
    assert len(set(ids)) == 3


def test_factory_outside_a_store_uses_home_counter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TYPEDSTORE_HOME", str(tmp_path / "home"))
    first = [IdFactory(prefix="h").new(None) for _ in range(2)]
    second = IdFactory(prefix="h").new(None)
    numbers = [i._seqno for i in [*first, second]]
    assert numbers == sorted(set(numbers))
    assert (tmp_path / "home").is_dir()


def test_factory_shared_by_two_stores_never_reuses_an_id(tmp_path: Path) -> None:
    earlier = FilesystemStore(tmp_path / "b")
    existing = {earlier.save({"old": i}): i for i in range(3)}
    shared = IdFactory()
    FilesystemStore(tmp_path / "a", idfactory=shared)
    second = FilesystemStore(tmp_path / "b", idfactory=shared)
    new_id = second.save({"new": True})
    assert new_id not in existing
    reader = FilesystemStore(tmp_path / "b")
    assert {reader.load(i)["old"] for i in existing} == {0, 1, 2}


# ---------------------------------------------------------------- FileCounter


def test_file_counter_reserves_consecutive_blocks(tmp_path: Path) -> None:
    counter = FileCounter(tmp_path / "next_id")
    assert counter() == 1
    assert counter(5) == 2
    assert counter() == 7
    with pytest.raises(ValueError):
        counter(0)
    assert counter() == 8


def test_file_counter_floor_applies_only_to_a_new_file(tmp_path: Path) -> None:
    calls: list[int] = []

    def floor() -> int:
        calls.append(1)
        return 40

    counter = FileCounter(tmp_path / "next_id", floor)
    assert counter() == 40
    assert counter() == 41
    assert FileCounter(tmp_path / "next_id", lambda: 1000)() == 42
    assert calls == [1]


def test_file_counter_is_shared_by_instances(tmp_path: Path) -> None:
    a = FileCounter(tmp_path / "next_id")
    b = FileCounter(tmp_path / "next_id")
    got = [a(), b(), a(3), b(2), a()]
    assert got == [1, 2, 3, 6, 8]


def _reserve_singles(path: str, count: int) -> list[int]:
    counter = FileCounter(path)
    return [counter(1) for _ in range(count)]


def test_file_counter_is_unique_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "next_id")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_reserve_singles, [(path, 50)] * 4)
    everything = [n for numbers in results for n in numbers]
    assert len(everything) == 200
    assert len(set(everything)) == 200
    for numbers in results:
        assert numbers == sorted(numbers)
        assert len(set(numbers)) == len(numbers)
    assert FileCounter(path)() == max(everything) + 1


@given(calls=st.lists(st.one_of(st.integers(1, 30), st.just("reset")), max_size=60),
       block=st.integers(1, 12))
def test_block_sequence_hands_out_each_number_once_and_runs_consecutive(
    calls: list[Any], block: int
) -> None:
    """Numbers come from fetched blocks only, never twice; a call's numbers are
    consecutive; a reset (rollback, fork) drops the rest of the block."""
    fetched: list[range] = []
    counter = [1]

    def fetch(n: int) -> int:
        assert n >= block
        first = counter[0]
        counter[0] += n
        fetched.append(range(first, first + n))
        return first

    sequence = BlockSequence(fetch, block)
    issued: list[int] = []
    for call in calls:
        if call == "reset":
            sequence.reset()
            continue
        first = sequence(call)
        numbers = list(range(first, first + call))
        assert any(numbers[0] in r and numbers[-1] in r for r in fetched)
        issued += numbers
    assert len(issued) == len(set(issued))
    assert issued == sorted(issued)
    assert len(fetched) <= len([c for c in calls if c != "reset"])
