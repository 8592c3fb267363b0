"""The ``typedstore`` command: a thin layer over the library's functions.

Each command calls one documented function (:func:`typedstore.upgrade`,
:func:`typedstore.backfill`, ...), so everything here is also scriptable.
Row models are named as ``package.module:Class``.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from . import demo as demo_module
from .errors import StoreError
from .evolution import backfill, rewrite_all
from .integrity import resign
from .schema import _import_object, downgrade, drift, upgrade
from .store import make_store

app = typer.Typer(help="Manage typedstore stores.", no_args_is_help=True,
                  pretty_exceptions_enable=False)

RowModelOption = Annotated[
    str | None, typer.Option("--row-model", help="row model as package.module:Class")]
TableOption = Annotated[
    str | None, typer.Option("--table", help="store table (default: URL's #table= or 'store')")]


def _model(spec: str | None) -> Any:
    return _import_object(spec) if spec else None


@app.command("upgrade")
def upgrade_cmd(url: str, table: TableOption = None, row_model: RowModelOption = None) -> None:
    """Create or upgrade a store table to the current schema (adds new row model columns)."""
    added = upgrade(url, table, _model(row_model))
    typer.echo(f"up to date; added: {', '.join(added) if added else 'nothing'}")


@app.command("downgrade")
def downgrade_cmd(url: str, revision: str, table: TableOption = None) -> None:
    """Downgrade a store table to REVISION ('base' drops the table)."""
    downgrade(url, revision, table)
    typer.echo(f"downgraded to {revision}")


@app.command("check")
def check_cmd(url: str, table: TableOption = None, row_model: RowModelOption = None) -> None:
    """List differences between the table and the row model; exit 1 if there are any."""
    diffs = drift(url, table, _model(row_model))
    for diff in diffs:
        typer.echo(repr(diff))
    if diffs:
        raise typer.Exit(1)
    typer.echo("no differences")


@app.command("backfill")
def backfill_cmd(
    url: str,
    row_model: Annotated[str, typer.Option("--row-model", help="package.module:Class")],
    column: Annotated[list[str] | None, typer.Option("--column", help="column to fill")] = None,
    leave_null: bool = False,
    restart: bool = False,
    batch_size: int = 500,
) -> None:
    """Fill extracted columns of existing rows from their pickles (resumable)."""
    with make_store(url, row_model=_model(row_model)) as store:
        report = backfill(store, column or None, batch_size=batch_size,
                          leave_null=leave_null, restart=restart)
    typer.echo(f"{report.rows} rows filled; {len(report.left_null)} left NULL")
    for id_, reason in report.left_null:
        typer.echo(f"  {id_}: {reason}")


@app.command("rewrite")
def rewrite_cmd(url: str, row_model: RowModelOption = None) -> None:
    """Rewrite every record in its current form (after class renames or upgrades)."""
    with make_store(url, row_model=_model(row_model)) as store:
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


@app.command("demo")
def demo_cmd(url: Annotated[str | None, typer.Argument()] = None) -> None:
    """Run the demo (see typedstore.demo)."""
    demo_module.main([url] if url else [])


def main() -> None:
    try:
        app()
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
