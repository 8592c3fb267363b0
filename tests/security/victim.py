"""A user's job package, as a program would have one: it imports os and
subprocess for its own use, which planted records try to reach through it."""

from __future__ import annotations

import enum
import os  # noqa: F401 - reached by planted records, must stay importable here
import subprocess  # noqa: F401
from subprocess import call as run_command  # noqa: F401 - a re-exported function

from typedstore import Persistable


class Job(Persistable):
    class State(str):
        """A nested class, as GC3Pie's Run.State."""

    def __init__(self, name: str, owner: str | None = None) -> None:
        self.name = name
        self.owner = owner
        self.state = Job.State("NEW")

    def __call__(self, *args: object) -> None:
        """Jobs can be run: a planted record must not make a referenced one run."""
        self.name = f"run with {args!r}"


class Color(enum.Enum):
    """An enum: a constructor call hands out a member shared by the whole process."""

    RED = 1
    GREEN = 2
