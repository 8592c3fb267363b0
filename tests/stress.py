"""Sizes of the stress tests: bounded by default, full on demand.

The default size keeps the whole suite (CI runs it) near a quarter of an hour
on two cores; ``TYPEDSTORE_STRESS=full`` runs each stress test at the size it
was written for (more rounds, more examples). A test's own variable
(``TYPEDSTORE_FUZZ_EXAMPLES``...) wins over both.
"""

from __future__ import annotations

import os

FULL = os.environ.get("TYPEDSTORE_STRESS", "").lower() == "full"


def size(bounded: int, full: int, variable: str | None = None) -> int:
    """``$variable`` if set, else ``full`` under ``TYPEDSTORE_STRESS=full``,
    else ``bounded``."""
    if variable and os.environ.get(variable):
        return int(os.environ[variable])
    return full if FULL else bounded
