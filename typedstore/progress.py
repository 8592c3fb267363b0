"""Progress bars for long store work (pack, copies), shown only on a terminal.

A thin layer over rich's progress display: on stderr, and only when stderr
is a terminal (or when asked), so scripts and logs that pipe the output get
nothing but what they asked for.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class Bar:
    """One task's bar: :meth:`total` once the amount of work is known, then
    :meth:`advance` per step. Does nothing when no bar is shown."""

    def __init__(self, progress: Progress | None, description: str) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=None) if progress is not None \
            else None

    def total(self, amount: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=amount)

    def advance(self, amount: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, amount)


@contextmanager
def progress_bar(show: bool | None, description: str) -> Iterator[Bar]:
    """A :class:`Bar` for ``description``, drawn on stderr when ``show`` is true,
    or (``None``) when stderr is a terminal."""
    if show is None:
        show = sys.stderr.isatty()
    if not show:
        yield Bar(None, description)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True),
                  transient=False) as progress:
        yield Bar(progress, description)


def pack_progress(show: bool | None, store: str) -> AbstractContextManager[Bar]:
    """The bar of a pack of ``store`` (see :func:`progress_bar`)."""
    return progress_bar(show, f"packing {store}")
