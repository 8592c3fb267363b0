"""``typedstore pack`` and ``typedstore references`` (issue 14's commands)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.concurrency.graphs import Node
from typedstore import make_store
from typedstore.cli import app

runner = CliRunner()


@pytest.fixture(params=["sqlite", "file"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/s.db" if request.param == "sqlite" else str(tmp_path / "jobs")


def test_pack_and_references(url: str) -> None:
    store = make_store(url)
    shared = Node("shared")
    top = Node("top", [Node("a", [shared]), Node("b", [shared])])
    store.save(top)
    holders = sorted(str(k.persistent_id) for k in top.kids)
    top.kids = top.kids[:1]
    store.save(top)
    store.close()

    listed = runner.invoke(app, ["references", url, str(shared.persistent_id), "--json"])
    assert listed.exit_code == 0, listed.output
    assert sorted(json.loads(listed.output)["referrers"]) == holders

    packed = runner.invoke(app, ["pack", url, "--json"])
    assert packed.exit_code == 0, packed.output
    report = json.loads(packed.output)
    assert report["removed"] == 1 and report["kept"] == 3
    assert report["sample"] == [holders[1]]

    listed = runner.invoke(app, ["references", url, str(shared.persistent_id)])
    assert listed.exit_code == 0 and listed.output.split() == [holders[0]]
    rebuilt = runner.invoke(app, ["references", url, "--rebuild", "--json"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert json.loads(rebuilt.output)["referrers"] is None


def test_references_needs_an_id_or_rebuild(url: str) -> None:
    done = runner.invoke(app, ["references", url])
    assert done.exit_code == 2
    assert "give a record id, or --rebuild" in done.output


def test_pack_refuses_a_bad_batch_size(url: str) -> None:
    done = runner.invoke(app, ["pack", url, "--batch-size", "0"])
    assert done.exit_code == 2
