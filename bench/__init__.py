"""Benchmarks of typedstore against the hardware floor and its peers (not tests).

Run ``python -m bench`` (full) or ``python -m bench --quick`` from the repository
root; see docs/performance.md.
"""
