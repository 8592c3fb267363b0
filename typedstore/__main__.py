"""``python -m typedstore``: the ``typedstore`` command (see :mod:`typedstore.cli`)."""

from .cli import main

main()
