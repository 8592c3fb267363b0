"""The documentation site (mkdocs.yml, docs/): it builds in strict mode, and its
examples run.

Every page's fenced examples are run in the page's order, in a fresh
directory of its own (outside the repository), each in a fresh process, as a
reader following the page would:

* a ```` ```python title="NAME" ```` block is a file: it is written to NAME;
* a ```` ```python ```` block is a program: ``python -c`` runs it, and it must
  exit with status 0;
* in a ```` ```console ```` block each ``$ `` line is a shell command, run
  with this environment's ``typedstore`` first on the PATH; a line ending in
  ``# exit N`` must end with status N, every other one with 0.

Other fences (``sh``, ``text``, bare ones) are not run: they hold commands
that install things, output, or URLs of database servers. Two pages have
runners of their own and are left to them: docs/sharing.md (its examples take
the store's URL as ``URL`` and run on SQLite and the file store) and
docs/schema-evolution.md (its commands run in a virtual environment made
from a wheel).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import typedstore

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: Pages whose examples another test runs.
OWN_RUNNERS = {
    "sharing.md": ROOT / "tests" / "docs" / "test_sharing_doc.py",
    "schema-evolution.md": ROOT / "tests" / "docs" / "test_schema_evolution_doc.py",
}
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*\n", re.S | re.M)
TITLE = re.compile(r'^title="([^"/]+)"$')
EXIT = re.compile(r"\s+#\s*exit\s+(\d+)\s*$")
#: The packages the build needs (the ``docs`` extra).
BUILD_MODULES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
BUILD_TIMEOUT = 120
STEP_TIMEOUT = 120


def pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def steps(page: Path) -> list[tuple[str, str, str]]:
    """The page's runnable examples in order: ``("file", NAME, text)``,
    ``("python", "", program)`` and ``("shell", command, "")``."""
    found: list[tuple[str, str, str]] = []
    for info, body in FENCE.findall(page.read_text()):
        words = info.split()
        language = words[0] if words else ""
        if language == "python":
            titled = TITLE.match(" ".join(words[1:])) if len(words) > 1 else None
            if titled:
                found.append(("file", titled.group(1), body))
            elif len(words) == 1:
                found.append(("python", "", body))
        elif language == "console":
            found.extend(("shell", line[2:], "") for line in body.splitlines()
                         if line.startswith("$ "))
    return found


def nav_pages() -> list[str]:
    """The pages mkdocs.yml's nav lists, in its order."""
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text.partition("\nnav:\n")[2]
    return re.findall(r"^\s+- [^:\n]+:\s+(\S+\.md)\s*$", nav, flags=re.M)


def _missing_build_modules() -> list[str]:
    return [name for name in BUILD_MODULES if importlib.util.find_spec(name.partition(".")[0])
            is None or importlib.util.find_spec(name) is None]


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    missing = _missing_build_modules()
    if missing:
        message = (f"the docs build needs {', '.join(missing)}: pip install -e '.[docs]' "
                   "(the test extra includes it)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    for page in nav_pages():
        built = site / ("index.html" if page == "index.md" else f"{page[:-3]}/index.html")
        assert built.is_file(), f"{page} was not built"
        # A fence whose info string the Markdown extensions do not read comes
        # out as a paragraph of text, silently (``python file=x.py`` did).
        assert "<p>```" not in built.read_text(), f"{page}: a code block did not render"
    reference = (site / "reference" / "index.html").read_text()
    for name in typedstore.__all__:
        assert f'id="typedstore.{name}"' in reference, f"typedstore.{name} is not in the reference"
    changelog = (site / "changelog" / "index.html").read_text()
    first_entry = (ROOT / "CHANGELOG.md").read_text().split("\n## ")[1].splitlines()[0]
    assert first_entry.split("]")[0].lstrip("[") in changelog


def test_the_nav_lists_every_page_once() -> None:
    listed = nav_pages()
    assert len(listed) == len(set(listed))
    assert sorted(listed) == [page.name for page in pages()]


def test_the_reference_names_every_public_name() -> None:
    entries = re.findall(r"^::: typedstore\.(\w+)\s*$", (DOCS / "reference.md").read_text(),
                         flags=re.M)
    assert sorted(entries) == sorted(typedstore.__all__)


def test_the_changelog_page_is_the_changelog() -> None:
    # The page includes CHANGELOG.md (pymdownx.snippets); nothing is copied.
    assert (DOCS / "changelog.md").read_text().strip() == '--8<-- "CHANGELOG.md"'


def test_the_command_line_page_has_every_command() -> None:
    import typer.main

    from typedstore.cli import app

    commands = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    described = re.findall(r"^## `typedstore (\w+)", (DOCS / "cli.md").read_text(), flags=re.M)
    assert sorted(described) == commands


def test_python_examples_are_fenced_to_run() -> None:
    """An example in Python is fenced ``python`` (run) or ``python title="NAME"``
    (a file the next ones use); other spellings would be skipped silently."""
    for page in pages():
        if page.name in OWN_RUNNERS:
            assert OWN_RUNNERS[page.name].is_file()
            continue
        for info, _ in FENCE.findall(page.read_text()):
            words = info.split()
            if not words or not words[0].lower().startswith(("py", "python")):
                continue
            assert words[0] == "python" and (
                len(words) == 1 or TITLE.match(" ".join(words[1:]))), (
                f"{page.name}: a ```{info} block would not be run")


RUN_PAGES = [page for page in pages() if page.name not in OWN_RUNNERS
             and any(kind != "file" for kind, _, _ in steps(page))]


def test_the_pages_have_examples() -> None:
    names = {page.name for page in RUN_PAGES}
    assert {"index.md", "backends.md", "cli.md", "security.md"} <= names
    assert sum(kind == "python" for page in RUN_PAGES for kind, _, _ in steps(page)) >= 10


@pytest.mark.parametrize("page", RUN_PAGES, ids=[page.name for page in RUN_PAGES])
def test_the_examples_of_a_page_run(page: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    assert ROOT not in work.parents
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "TYPEDSTORE_URL",
                        "TYPEDSTORE_SIGNING_KEYS")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["HOME"] = str(tmp_path)  # ~ in an example, GC3Pie's counter file
    for number, (kind, what, body) in enumerate(steps(page), start=1):
        if kind == "file":
            (work / what).write_text(body)
            continue
        if kind == "python":
            command: list[str] = [sys.executable, "-c", body]
            want, shown = 0, body
        else:
            expected = EXIT.search(what)
            command = ["bash", "-c", what]
            want, shown = (int(expected.group(1)) if expected else 0), what
        done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True,
                              timeout=STEP_TIMEOUT, check=False)
        assert done.returncode == want, (
            f"{page.name}, example {number} exited {done.returncode}, expected {want}:\n"
            f"{shown}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")
        assert "Traceback" not in done.stderr, f"{page.name}, example {number}:\n{done.stderr}"
