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
from .defaults import DEFAULT_PROTOCOL
from .errors import (
    ConflictError,
    LoadError,
    NotFoundError,
    SaveError,
    SchemaError,
    StoreError,
    TransactionError,
    UnsafeLoadError,
    UrlError,
)
from .filesystem import FilesystemStore, make_filesystemstore
from .ids import Id, IdFactory, IntId, JobIdFactory
from .query import Query
from .rows import StoreRow, extracted
from .serialization import Persistable, register_class_alias
from .sql import SqlStore, make_sqlstore
from .store import Store, make_store, register

__all__ = [
    "DEFAULT_PROTOCOL",
    "GET",
    "ConflictError",
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
    "LoadError",
    "NotFoundError",
    "Persistable",
    "Query",
    "SaveError",
    "SchemaError",
    "SqlStore",
    "Store",
    "StoreError",
    "StoreRow",
    "TransactionError",
    "UnsafeLoadError",
    "UrlError",
    "extracted",
    "make_filesystemstore",
    "make_sqlstore",
    "make_store",
    "register",
    "register_class_alias",
]
