"""Every tunable default of typedstore, in one visible place.

Changing a value here changes it for every store; most can also be passed to a
store's constructor. docs/performance.md says what each costs.
"""

from __future__ import annotations

#: Pickle protocol for new records. Protocol 4 is read by every Python 3
#: release (and by GC3Pie on Python 3); 5 adds out-of-band buffers that job
#: objects do not use.
DEFAULT_PROTOCOL = 4

#: Table used by the SQL store when neither ``table_name=`` nor ``#table=`` names one
#: (GC3Pie's default).
DEFAULT_TABLE = "store"

#: Name of the small table that hands out id blocks to every process of a SQL store.
ID_COUNTER_TABLE = "typedstore_ids"

#: How many ids a SQL store process takes from the counter table at once. A block
#: costs one short write transaction; unused numbers of a block are gaps, never reused.
ID_BLOCK_SIZE = 100

#: How often a SQL store tries to create a table's id counter row when processes
#: race to create it and the database ends a transaction on the deadlock (MySQL).
COUNTER_ATTEMPTS = 5

#: How many ids a file-store process takes from the directory's counter file at once
#: (each take rewrites and fsyncs that file). Smaller than the SQL block: every
#: process that saves anything leaves at most this many numbers unused.
FILE_ID_BLOCK_SIZE = 20

#: State stored for objects without ``obj.execution.state`` (GC3Pie's value).
UNKNOWN_STATE = "UNKNOWN"

#: Longest state string the ``state`` column holds.
STATE_LENGTH = 128

#: SQLite settings applied to every new connection. WAL lets readers run beside
#: one writer; synchronous=NORMAL in WAL mode is durable against process crashes
#: and keeps the database consistent on power loss (the last commits may roll back).
#: case_sensitive_like=ON makes LIKE (``like``, ``startswith``, ``contains``...)
#: case-sensitive as on PostgreSQL and MariaDB's binary collation (SQLite's LIKE
#: ignores ASCII case otherwise); docs/types.md, "Queries".
SQLITE_PRAGMAS: dict[str, str] = {
    "journal_mode": "WAL",
    "synchronous": "NORMAL",
    "foreign_keys": "ON",
    "case_sensitive_like": "ON",
}

# Timeouts (seconds). Each can be changed per store: ``make_store(url,
# connect_timeout=, lock_timeout=, statement_timeout=, read_timeout=)``;
# docs/operations.md ("Threads, timeouts, reconnects") says which error each ends in.

#: Connecting to a PostgreSQL or MySQL/MariaDB server, handshake included
#: (PostgreSQL counts whole seconds, at least 2). Ends in ConnectTimeout.
CONNECT_TIMEOUT = 10.0

#: Waiting for a lock another client or process holds: a row lock (PostgreSQL
#: ``lock_timeout``; MariaDB ``innodb_lock_wait_timeout`` and ``lock_wait_timeout``,
#: whole seconds), SQLite's write lock (busy timeout), a file store's commit
#: and id counter locks. Ends in LockTimeout.
LOCK_TIMEOUT = 60.0

#: Longest a statement may run on the server (PostgreSQL ``statement_timeout``,
#: MariaDB ``max_statement_time``, MySQL ``max_execution_time`` for reads);
#: 0: no limit. Ends in ServerTimeout.
STATEMENT_TIMEOUT = 0.0

#: Longest wait for a connected server's answer to one statement or fetch
#: (MySQL/MariaDB: PyMySQL ``read_timeout``/``write_timeout``; PostgreSQL: a
#: client-side deadline, typedstore.deadlines); ends in ReadTimeout, the
#: connection closed. Raised to at least the lock and statement
#: timeouts plus :data:`READ_TIMEOUT_MARGIN` when not given.
READ_TIMEOUT = 600.0
READ_TIMEOUT_MARGIN = 30.0

#: Seconds a SQLite connection waits for another writer's lock before failing.
SQLITE_BUSY_TIMEOUT = LOCK_TIMEOUT

#: Seconds a process waits for another one changing a store table's schema.
SCHEMA_LOCK_TIMEOUT = 120.0

#: Seconds a file-store process waits for a directory lock (id counter, commits).
ID_LOCK_TIMEOUT = LOCK_TIMEOUT

#: Environment variable naming the directory of the fallback id counter used by an
#: :class:`~typedstore.ids.IdFactory` that no store has bound.
ID_COUNTER_HOME_ENV = "TYPEDSTORE_HOME"

#: Rows fetched per round trip when a query streams its results.
STREAM_BATCH_SIZE = 500

#: Seconds after which a file store removes a temporary file whose writer it
#: cannot ask about (another host's, or named by an older release): a live
#: writer renames its temporary file within one commit.
STALE_TEMP_AGE = 24 * 3600.0

#: The largest record file a file store reads, in bytes: a bigger one (a
#: planted sparse file, a link to a device) is a LoadError, not unbounded memory.
MAX_RECORD_BYTES = 1 << 30

#: What a file store or SQLite store opened on a network file system (NFS,
#: SMB, sshfs...) does: "warn" (once), "error" (StoreError), or "ignore".
#: Store argument: ``network_filesystem=``. See typedstore.mounts.
NETWORK_FILESYSTEM = "warn"

#: Name of the hidden directory a file store keeps its own bookkeeping in.
FILESTORE_META_DIR = ".typedstore"

#: Suffix of the backup GC3Pie leaves beside a record while replacing it.
BACKUP_SUFFIX = ".OLD"

#: Environment variable naming GC3Pie's id counter file, and its default path
#: (``gc3libs.utils.progressive_number`` in GC3Pie 2.6.8).
GC3PIE_ID_FILE_ENV = "GC3PIE_ID_FILE"
GC3PIE_ID_FILE_DEFAULT = "~/.gc3/next_id.txt"

#: Seconds to wait for GC3Pie's counter lock (GC3Pie itself waits 30 s).
GC3PIE_ID_LOCK_TIMEOUT = 30.0

#: Store.retry: attempts, and the base and the cap of the random backoff (seconds).
RETRY_ATTEMPTS = 10
RETRY_BACKOFF = 0.01
RETRY_MAX_BACKOFF = 1.0
