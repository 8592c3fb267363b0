"""The ``typedstore`` command: a thin layer over the library's functions.

Each command calls one documented function (:func:`typedstore.upgrade`,
:func:`typedstore.backfill`, ...), so everything here is also scriptable.
Row models are named as ``package.module:Class``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import demo as demo_module
from .differences import differences
from .differences import report as drift_report
from .errors import NotFoundError, StoreError
from .evolution import backfill, rewrite_all
from .inspection import jsonable, list_records, open_existing, show_record, store_stats
from .integrity import resign
from .pickleview import render
from .scaffold import NEXT_STEP, init
from .schema import downgrade, import_row_model, upgrade
from .store import make_store
from .tables import store_table_name
from .urls import parse_store_url

app = typer.Typer(help="Manage typedstore stores.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            shown = version("typedstore")
        except PackageNotFoundError:  # run from a checkout that is not installed
            shown = "unknown (not installed)"
        typer.echo(f"typedstore {shown}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True,
        help="print typedstore's version and exit")] = False,
) -> None:
    """Manage typedstore stores."""

AllowOption = Annotated[
    list[str] | None, typer.Option(
        "--allow", help="unpickle only these classes: package.module.Class or package.* "
                        "(repeat it; without it every class a record names is loaded)")]
RowModelOption = Annotated[
    str | None, typer.Option("--row-model", help="row model as package.module:Class")]
TableOption = Annotated[
    str | None, typer.Option(
        "--table", help="store table (default: the URL's #table=, else the row model's "
                        "__tablename__, else 'store')")]

ConfigOption = Annotated[
    Path | None, typer.Option(
        "--config", help="the project's alembic.ini, whose version locations hold the "
                         "table's own revisions (default: ./alembic.ini, as alembic reads)")]


def _model(spec: str | None) -> Any:
    return import_row_model(spec) if spec else None


def _table(url: str, table: str | None, row_model: Any) -> str:
    """The table a command acts on, by the one rule, and the URL shown (no password)."""
    parsed = parse_store_url(url)
    return f"table {store_table_name(table, parsed.table, row_model)!r} at {parsed.redacted}"


@app.command("init")
def init_cmd(
    directory: Annotated[Path, typer.Argument(help="where to write them")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="overwrite files that differ")] = False,
) -> None:
    """Write alembic.ini and migrations/ (wired to typedstore's revisions) into DIRECTORY."""
    written = init(directory, force=force)
    for path in written:
        typer.echo(f"wrote {path}")
    if not written:
        typer.echo(f"{directory}: alembic.ini and migrations/ are there already")
    typer.echo(f"next: {NEXT_STEP}")


@app.command("upgrade")
def upgrade_cmd(url: str, table: TableOption = None, row_model: RowModelOption = None,
                config: ConfigOption = None) -> None:
    """Create or upgrade a store table to the current schema (adds new row model columns).

    The table's own revisions run too, found through the project's alembic.ini
    (--config, else ./alembic.ini)."""
    model = _model(row_model)
    added = upgrade(url, table, model, config=config)
    typer.echo(f"{_table(url, table, model)}: up to date; added: "
               f"{', '.join(added) if added else 'nothing'}")


@app.command("downgrade")
def downgrade_cmd(url: str, revision: str, table: TableOption = None,
                  row_model: RowModelOption = None, config: ConfigOption = None) -> None:
    """Downgrade a store table to REVISION ('base' removes the table and everything
    typedstore made for it)."""
    model = _model(row_model)
    downgrade(url, revision, table, model, config=config)
    typer.echo(f"{_table(url, table, model)}: downgraded to {revision}")


@app.command("check")
def check_cmd(
    url: str, table: TableOption = None, row_model: RowModelOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Say what differs between the table and the row model, one line each.

    Exit status: 0 when the table is in step (differences that need no action,
    such as extra columns, are listed), 1 when action is needed, 2 on errors.
    """
    model = _model(row_model)
    found = differences(url, table, model)
    needed = any(d.action_needed for d in found)
    if as_json:
        typer.echo(json.dumps(drift_report(url, table, model, found), indent=2))
    else:
        where = _table(url, table, model)
        for difference in found:
            typer.echo(f"{'ACTION' if difference.action_needed else 'note  '} "
                       f"{difference.message}")
        if not found:
            typer.echo(f"{where}: no differences (in step with the row model)")
        elif not needed:
            typer.echo(f"{where}: in step (nothing to do)")
        else:
            typer.echo(f"{where}: action needed")
    if needed:
        raise typer.Exit(1)


@app.command("backfill")
def backfill_cmd(
    url: str,
    row_model: Annotated[str, typer.Option("--row-model", help="package.module:Class")],
    column: Annotated[list[str] | None, typer.Option("--column", help="column to fill")] = None,
    table: TableOption = None,
    leave_null: bool = False,
    restart: bool = False,
    batch_size: int = 500,
    allow: AllowOption = None,
) -> None:
    """Fill extracted columns of existing rows from their pickles (resumable)."""
    named: dict[str, Any] = {"table_name": table} if table else {}
    with make_store(url, row_model=_model(row_model), allowed_classes=allow,
                    **named) as store:
        report = backfill(store, column or None, batch_size=batch_size,
                          leave_null=leave_null, restart=restart)
    typer.echo(f"{report.rows} rows filled; {len(report.left_null)} left NULL")
    for id_, reason in report.left_null:
        typer.echo(f"  {id_}: {reason}")


@app.command("rewrite")
def rewrite_cmd(url: str, row_model: RowModelOption = None, allow: AllowOption = None) -> None:
    """Rewrite every record in its current form (after class renames or upgrades)."""
    with make_store(url, row_model=_model(row_model), allowed_classes=allow) as store:
        skipped = rewrite_all(store)
    for id_, reason in skipped:
        typer.echo(f"skipped {id_}: {reason}")


@app.command("resign")
def resign_cmd(
    url: str,
    sign_unsigned: Annotated[bool, typer.Option(
        "--sign-unsigned", help="also sign records that have no MAC (you vouch for them)")
    ] = False,
) -> None:
    """Sign every record with the first key of $TYPEDSTORE_SIGNING_KEYS (key rotation).

    Put the new key first and the old ones after it; records whose MAC no key
    made, or that are damaged, are listed and left as they are (exit status 1).
    """
    with make_store(url) as store:
        report = resign(store, sign_unsigned=sign_unsigned)
    typer.echo(f"{report.signed} re-signed, {report.current} already signed with the first "
               f"key, {len(report.refused)} refused")
    for id_, reason in report.refused:
        typer.echo(f"  {id_}: {reason}")
    if report.refused:
        raise typer.Exit(1)


@app.command("pack")
def pack_cmd(
    url: str,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", min=1, help="records removed per statement")] = 1000,
    as_json: JsonOption = False,
) -> None:
    """Remove children no root reaches any more (Store.pack); a progress bar on a terminal.

    Records saved directly are roots and stay; so does everything they
    reference. Safe while other processes write.
    """
    with _reported(), open_existing(url) as store:
        report = store.pack(batch_size=batch_size, progress=None if not as_json else False)
    if as_json:
        typer.echo(json.dumps({"removed": report.removed, "kept": report.kept,
                               "scanned": report.scanned,
                               "sample": [str(i) for i in report.sample]}))
        return
    typer.echo(f"{report.removed} record(s) removed, {report.kept} kept"
               + (f"; references of {report.scanned} read from their payloads"
                  if report.scanned else ""))


@app.command("references")
def references_cmd(
    url: str,
    record: Annotated[str | None, typer.Argument(
        help="a record id: list the records referencing it")] = None,
    rebuild: Annotated[bool, typer.Option(
        "--rebuild", help="read every record's references from its payload again "
                          "(a store GC3Pie writes to)")] = False,
    as_json: JsonOption = False,
) -> None:
    """The records referencing RECORD (Store.referrers), or --rebuild the references."""
    if record is None and not rebuild:
        typer.echo("error: give a record id, or --rebuild", err=True)
        raise typer.Exit(2)
    with _reported(), open_existing(url) as store:
        if rebuild:
            count = store.rebuild_references()
            if not as_json:
                typer.echo(f"references of {count} record(s) read from their payloads")
        found = [str(i) for i in store.referrers(record)] if record is not None else None
    if as_json:
        typer.echo(json.dumps({"referrers": found} if not rebuild else
                              {"rebuilt": count, "referrers": found}))
    elif found is not None:
        typer.echo("\n".join(found) if found else f"nothing references {record}")


@app.command("demo")
def demo_cmd(url: Annotated[str | None, typer.Argument()] = None) -> None:
    """Run the demo (see typedstore.demo)."""
    demo_module.main([url] if url else [])


ModelOption = Annotated[
    str | None, typer.Option(
        "--model", help="row model as package.module:Row: its fields come back typed "
                        "(without it, columns come back as stored)")]
JsonOption = Annotated[
    bool, typer.Option("--json", help="print JSON for scripts (nothing else on stdout)")]


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """One line on stderr for an error: exit status 1 when what was asked for is
    not there (a store, a record), 2 for bad input (URL, condition, option)."""
    try:
        yield
    except NotFoundError as exc:
        typer.echo(f"error: {_one_line(exc)}", err=True)
        raise typer.Exit(1) from None
    except (StoreError, ValueError) as exc:
        typer.echo(f"error: {_one_line(exc)}", err=True)
        raise typer.Exit(2) from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).splitlines())


def _console() -> Console:
    return Console(highlight=False, emoji=False)


def _printable(value: Any) -> Text:
    """A value for a table cell: control characters escaped, no markup read."""
    shown = jsonable(value)
    text = "" if shown is None else str(shown)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return Text(text)


@app.command("ls")
def ls_cmd(
    url: str,
    state: Annotated[str | None, typer.Option("--state", help="only records in this state")
                     ] = None,
    where: Annotated[str | None, typer.Option(
        "--where", help="only records matching a condition over column names, e.g. "
                        "\"cores > 8 and state == 'RUNNING'\" (comparisons, and/or/not, "
                        "literals; never evaluated)")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=0, help="at most N records")
                     ] = None,
    model: ModelOption = None,
    as_json: JsonOption = False,
) -> None:
    """List records: ids with their typed columns (nothing is unpickled).

    Exit status: 0, also when nothing matches; 1 when there is no store at URL;
    2 for bad input (URL, condition, unknown column).
    """
    with _reported():
        listing = list_records(url, state=state, where=where, limit=limit, row_model=model)
    if as_json:
        typer.echo(json.dumps(listing.as_dict(), indent=2))
        return
    console = _console()
    console.print(Text(listing.store), soft_wrap=True)
    table = Table(*listing.columns)
    for row in listing.rows:
        table.add_row(*(_printable(row.get(name)) for name in listing.columns))
    console.print(table)
    console.print(Text(f"{len(listing.rows)} record(s)"))
    if listing.unindexed:
        shown = ", ".join(listing.unindexed[:20]) + (" ..." if len(listing.unindexed) > 20
                                                     else "")
        console.print(Text(f"{len(listing.unindexed)} record(s) not in the index yet "
                           f"(columns unknown without loading them): {shown}"), soft_wrap=True)


@app.command("show")
def show_cmd(url: str, id_: Annotated[str, typer.Argument(metavar="ID", help="record id")],
             model: ModelOption = None, as_json: JsonOption = False) -> None:
    """Show one record: its typed columns and a readable view of its payload.

    The payload is never unpickled: no class it names is imported and nothing
    it names is called. Exit status: 0; 1 when the store or the record is not
    there; 2 for bad input.
    """
    with _reported():
        view = show_record(url, id_, row_model=model)
    if as_json:
        typer.echo(json.dumps(view.as_dict(), indent=2))
        return
    console = _console()

    def say(line: str) -> None:
        console.print(Text(line), soft_wrap=True)

    say(f"record {_printable(view.id)} at {view.store}")
    table = Table("column", "value")
    for name, value in view.columns.items():
        table.add_row(Text(name), _printable(value))
    if view.columns:
        console.print(table)
    else:
        say("no index row yet (columns unknown)")
    payload = view.payload
    say(f"integrity: {view.integrity}: {view.integrity_detail}")
    say(f"payload: {payload.size} bytes, pickle protocol {payload.protocol}; names: "
        f"{', '.join(map(str, map(_printable, payload.names))) or 'nothing'}")
    if payload.references:
        say(f"references: {', '.join(map(str, map(_printable, payload.references)))}")
    for line in render(payload.value) if payload.value is not None else []:
        say(line)
    for note in payload.notes:
        say(f"note: {_printable(note)}")
    if payload.error:
        say(f"the payload could not be read to its end: {_printable(payload.error)}")


@app.command("stats")
def stats_cmd(url: str, as_json: JsonOption = False) -> None:
    """Counts by state, number and size of the records, schema revision and
    backend settings. Exit status: 0; 1 when there is no store at URL; 2 for
    bad input."""
    with _reported():
        report = store_stats(url)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    console = _console()
    console.print(Text(report.store), soft_wrap=True)
    counts = Table("state", "records")
    for state, count in report.by_state.items():
        counts.add_row(_printable(state), Text(str(count)))
    console.print(counts)
    facts = Table("", "", show_header=False)
    facts.add_row(Text("records"), Text(str(report.records)))
    facts.add_row(Text("size"), Text(f"{report.size_bytes} bytes"))
    if report.backend == "sql":
        facts.add_row(Text("revision"), Text(", ".join(report.revision or ["none"])))
        facts.add_row(Text("code revision"), Text(str(report.code_revision)))
    for name, value in report.settings.items():
        facts.add_row(Text(name.replace("_", " ")), _printable(value))
    console.print(facts)


def main() -> None:
    """The console script: typedstore's errors, and bad values (a URL, a key, an
    option: ValueError), end in one line on stderr and exit status 2 (``check``
    uses 1 for "action needed")."""
    try:
        app()
    except (StoreError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
