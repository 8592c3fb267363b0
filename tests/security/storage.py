"""Raw access to a stored record's bytes, checksum and MAC on every backend, as
someone with write access to the storage (or a damaged disk) has it: the
record file and the sidecar index of a file store, the row of a SQL store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from typedstore import FilesystemStore, SqlStore, Store
from typedstore.integrity import CHECKSUM_COLUMN, MAC_COLUMN

KEEP: Any = object()


def read_raw(store: Store, id_: Any) -> tuple[bytes, int | None, str | None]:
    """``(payload, checksum, mac)`` of record ``id_`` as stored."""
    if isinstance(store, FilesystemStore):
        data = Path(store.directory, str(id_)).read_bytes()
        t = store.index.table
        with store.index.engine.connect() as conn:
            row = conn.execute(sa.select(t.c[CHECKSUM_COLUMN], t.c[MAC_COLUMN])
                               .where(t.c.id == str(id_))).one()
        return data, row[0], row[1]
    assert isinstance(store, SqlStore)
    t = store.table
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(t.c.data, t.c[CHECKSUM_COLUMN], t.c[MAC_COLUMN])
                           .where(t.c.id == int(id_))).one()
    return bytes(row[0]), row[1], row[2]


def write_raw(store: Store, id_: Any, data: Any = KEEP, checksum: Any = KEEP,
              mac: Any = KEEP) -> None:
    """Overwrite what is given of record ``id_`` (payload, checksum, MAC) in place."""
    seal = {name: value for name, value in ((CHECKSUM_COLUMN, checksum), (MAC_COLUMN, mac))
            if value is not KEEP}
    if isinstance(store, FilesystemStore):
        if data is not KEEP:
            Path(store.directory, str(id_)).write_bytes(data)
        if seal:
            t = store.index.table
            with store.index.engine.begin() as conn:
                conn.execute(sa.update(t).where(t.c.id == str(id_)).values(seal))
        return
    assert isinstance(store, SqlStore)
    values = dict(seal)
    if data is not KEEP:
        values["data"] = data
    if values:
        t = store.table
        with store.engine.begin() as conn:
            conn.execute(sa.update(t).where(t.c.id == int(id_)).values(values))


def insert_raw(store: Store, id_: Any, data: bytes) -> None:
    """Plant a new record ``id_`` (no checksum, no MAC), as a hostile writer would."""
    if isinstance(store, FilesystemStore):
        Path(store.directory, str(id_)).write_bytes(data)
        return
    assert isinstance(store, SqlStore)
    with store.engine.begin() as conn:
        conn.execute(sa.insert(store.table).values(id=int(id_), data=data, state="NEW",
                                                   version=1))
