"""typedstore: typed, transactional persistence for job objects.

A drop-in replacement for GC3Pie's ``gc3libs.persistence``: ``make_store(url)``
gives a store that saves, loads and queries Python objects. Everything users
need is importable from here.
"""

from .accessors import (
    GET,
    GetAttribute,
    GetAttributeValue,
    GetItem,
    GetItemValue,
    GetOnly,
    GetValue,
)
from .allowlist import AllowList, allowed_classes
from .defaults import DEFAULT_PROTOCOL
from .errors import (
    ConflictError,
    ConnectError,
    ConnectionLostError,
    ConnectTimeout,
    DamagedRecordError,
    DeadlockError,
    LoadError,
    LockTimeout,
    NotFoundError,
    OutcomeUnknownError,
    QueryError,
    ReadTimeout,
    ReferencedError,
    SaveError,
    SchemaError,
    ServerTimeout,
    SignatureError,
    StoreError,
    TransactionError,
    UnsafeLoadError,
    UrlError,
)
from .evolution import BackfillError, BackfillReport, backfill, rewrite_all
from .filesystem import FilesystemStore, make_filesystemstore
from .ids import Id, IdFactory, IntId, JobIdFactory
from .inspection import Listing, RecordView, StoreReport, list_records, show_record, store_stats
from .integrity import ResignReport, resign
from .query import Query
from .references import PackReport
from .rows import StoreRow, extracted
from .schema import downgrade, drift, upgrade
from .serialization import MissingClass, Persistable, register_class_alias, register_upgrade
from .sql import SqlStore, make_sqlstore
from .store import RefreshReport, Store, make_store, register

__all__ = [
    "DEFAULT_PROTOCOL",
    "GET",
    "AllowList",
    "BackfillError",
    "BackfillReport",
    "ConflictError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionLostError",
    "DamagedRecordError",
    "DeadlockError",
    "FilesystemStore",
    "GetAttribute",
    "GetAttributeValue",
    "GetItem",
    "GetItemValue",
    "GetOnly",
    "GetValue",
    "Id",
    "IdFactory",
    "IntId",
    "JobIdFactory",
    "Listing",
    "LoadError",
    "LockTimeout",
    "MissingClass",
    "NotFoundError",
    "OutcomeUnknownError",
    "PackReport",
    "Persistable",
    "Query",
    "QueryError",
    "ReadTimeout",
    "RecordView",
    "ReferencedError",
    "RefreshReport",
    "ResignReport",
    "SaveError",
    "SchemaError",
    "ServerTimeout",
    "SignatureError",
    "SqlStore",
    "Store",
    "StoreError",
    "StoreReport",
    "StoreRow",
    "TransactionError",
    "UnsafeLoadError",
    "UrlError",
    "allowed_classes",
    "backfill",
    "downgrade",
    "drift",
    "extracted",
    "list_records",
    "make_filesystemstore",
    "make_sqlstore",
    "make_store",
    "register",
    "register_class_alias",
    "register_upgrade",
    "resign",
    "rewrite_all",
    "show_record",
    "store_stats",
    "upgrade",
]
