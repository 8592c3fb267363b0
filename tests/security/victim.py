"""A user's job package, as a program would have one: it imports os and
subprocess for its own use, which planted records try to reach through it."""

from __future__ import annotations

import os  # noqa: F401 - reached by planted records, must stay importable here
import subprocess  # noqa: F401
from subprocess import call as run_command  # noqa: F401 - a re-exported function

from typedstore import Persistable


class Job(Persistable):
    class State(str):
        """A nested class, as GC3Pie's Run.State."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = Job.State("NEW")
