"""MkDocs hooks of the documentation site (mkdocs.yml: ``hooks:``).

typedstore's docstrings name other objects with Sphinx roles
(``:class:`~typedstore.errors.SaveError```), which mkdocstrings renders as the
role's text followed by the code span. The API reference shows the code span
alone, shortened as Sphinx's ``~`` asks (the last dotted part).
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):<code>(~?)([^<]*)</code>")


def _shown(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **_: Any) -> str:
    """Turn ``:class:<code>~pkg.mod.Name</code>`` into ``<code>Name</code>``."""
    return _ROLE.sub(_shown, html)
