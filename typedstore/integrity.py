"""Checksums and signatures of record payloads (docs/security.md).

Every record a store writes carries a **checksum** of its payload, kept beside
it (the SQL table's ``_checksum`` column, the file store's sidecar index; never
inside the record, which GC3Pie must keep reading). It is CRC-32
(:func:`zlib.crc32`): it detects every burst of damage up to 32 bits and all
but one in 2**32 of any other damage, at about a gigabyte per second, which is
what it is for. It is no defence against someone who *means* to change a
record: anyone can compute it. A record without a checksum (written before
checksums, or by GC3Pie) is loaded unchecked.

A store given **signing keys** also keeps an HMAC-SHA256 (``_mac``) of each
record it writes, over a fixed tag, the record's id and its payload: a
record planted or changed without the key, or copied under another id, is
refused before anything of it is unpickled. Keys are a list: the first
signs, every one verifies, so keys rotate by putting the new one first and
re-signing the store (:func:`resign`) before the old one is dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import DamagedRecordError, NotFoundError, SignatureError, StoreError

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger(__name__)

#: The column (SQL table, file index) holding a record's checksum.
CHECKSUM_COLUMN = "_checksum"
#: The column holding a record's MAC (hex HMAC-SHA256) in a signed store.
MAC_COLUMN = "_mac"
#: Both, as a table has them since revision ts0004.
INTEGRITY_COLUMNS = (CHECKSUM_COLUMN, MAC_COLUMN)
#: Hex digits of a MAC.
MAC_LENGTH = 64
#: Environment variable read when a store is given no ``signing_keys``:
#: comma-separated keys, the first signs.
SIGNING_KEYS_ENV = "TYPEDSTORE_SIGNING_KEYS"
#: The shortest key accepted, in bytes (HMAC-SHA256 keys should carry 256 bits;
#: shorter keys are refused below 128).
MIN_KEY_BYTES = 16
#: Prefixed to what is signed, so a typedstore MAC is never valid for any
#: other use of the same key.
_TAG = b"typedstore record v1\0"

checksum = zlib.crc32
"""The checksum of a payload (CRC-32 as an unsigned int)."""


class Record(NamedTuple):
    """One stored record as a backend read it.

    Attributes:
        payload (bytes): the pickle.
        version (int | None): its version (SQL stores with bookkeeping columns).
        checksum (int | None): the checksum stored with it (``None``: not checked).
        mac (str | None): the MAC stored with it (``None``: unsigned).
        stamp (str | None): the file store's stamp of the file read (for re-signing).
    """

    payload: bytes
    version: int | None
    checksum: int | None = None
    mac: str | None = None
    stamp: str | None = None


class Signer:
    """Signs records with the first key and verifies them with any key."""

    __slots__ = ("_bases", "count")

    def __init__(self, keys: Iterable[str | bytes]) -> None:
        raw: list[bytes] = []
        for position, key in enumerate(keys, 1):
            if isinstance(key, str):
                try:
                    key = key.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError(f"signing key {position} is not valid Unicode (it holds "
                                     "a lone surrogate); give it as bytes") from None
            if not isinstance(key, bytes):
                raise TypeError(f"signing key {position} is a {type(key).__name__}, "
                                "not str or bytes")
            if len(key) < MIN_KEY_BYTES:
                raise ValueError(f"signing key {position} is {len(key)} bytes long; keys "
                                 f"need at least {MIN_KEY_BYTES} (32 random bytes recommended)")
            raw.append(key)
        if not raw:
            raise ValueError("a Signer needs at least one key")
        self._bases = [hmac.new(key, _TAG, hashlib.sha256) for key in raw]
        self.count = len(raw)

    @staticmethod
    def _message_id(id_: Any) -> bytes:
        return str(id_).encode("utf-8", "surrogatepass") + b"\0"

    def _mac(self, base: Any, id_: Any, payload: bytes) -> str:
        mac = base.copy()
        mac.update(self._message_id(id_))
        mac.update(payload)
        return str(mac.hexdigest())

    def sign(self, id_: Any, payload: bytes) -> str:
        """The MAC of record ``id_`` holding ``payload``, with the first key."""
        return self._mac(self._bases[0], id_, payload)

    def key_of(self, id_: Any, payload: bytes, mac: str) -> int | None:
        """Which key (0 = the first) made ``mac`` for this record; ``None``: none did."""
        for index, base in enumerate(self._bases):
            if hmac.compare_digest(self._mac(base, id_, payload), mac):
                return index
        return None


def make_signer(signing_keys: Iterable[str | bytes] | None) -> Signer | None:
    """The store's signer: from ``signing_keys`` if given (an empty list: no
    signing, whatever the environment says), else from
    :data:`SIGNING_KEYS_ENV` (comma-separated), else ``None``."""
    if signing_keys is None:
        text = os.environ.get(SIGNING_KEYS_ENV, "")
        keys: list[str | bytes] = [k.strip() for k in text.split(",") if k.strip()]
        if not keys:
            return None
        try:
            return Signer(keys)
        except ValueError as exc:
            raise ValueError(f"${SIGNING_KEYS_ENV} (comma-separated keys): {exc}") from None
    if isinstance(signing_keys, (str, bytes)):
        raise TypeError("signing_keys is a list of keys (the first signs), not one key")
    keys = list(signing_keys)
    return Signer(keys) if keys else None


def verify(describe: Callable[[], str], id_: Any, payload: bytes,
           stored_checksum: int | None, mac: str | None, signer: Signer | None) -> None:
    """Raise :class:`DamagedRecordError` if ``payload`` does not match its stored
    checksum, :class:`SignatureError` if a ``signer`` is given and ``mac`` is
    missing or made by none of its keys. ``describe()`` names the store (called
    only for an error: it costs more than the check)."""
    if stored_checksum is not None and checksum(payload) != stored_checksum:
        raise DamagedRecordError(
            f"{describe()}: record {id_} is damaged: its {len(payload)} bytes do not match the "
            "checksum stored with it (changed after it was written: bad storage, a "
            "truncated copy?); nothing of it was loaded", id_)
    if signer is None:
        return
    if mac is None:
        raise SignatureError(
            f"{describe()}: record {id_} is not signed, and this store accepts signed "
            "records only (written without the signing key: planted, or written "
            "before signing was turned on; see typedstore.integrity.resign)", id_, "missing")
    if signer.key_of(id_, payload, mac) is None:
        raise SignatureError(
            f"{describe()}: record {id_} has a MAC that none of the store's {signer.count} "
            "signing key(s) made for this id and payload (modified or planted without the "
            "key, copied from another id, or damaged); refused before unpickling",
            id_, "wrong")


@dataclass
class ResignReport:
    """What :func:`resign` did.

    Attributes:
        signed (int): records given a MAC of the first key.
        current (int): records already signed with the first key.
        refused (list[tuple[Any, str]]): records left as they were, with why
            (damaged, a MAC no key made, unsigned without ``sign_unsigned``).
    """

    signed: int = 0
    current: int = 0
    refused: list[tuple[Any, str]] = field(default_factory=list)


#: Attempts at re-signing a record that other writers keep changing.
RESIGN_ATTEMPTS = 3


def resign(store: Store, *, sign_unsigned: bool = False) -> ResignReport:
    """Sign every record of ``store`` with its first signing key.

    For key rotation: open the store with the new key first and the old ones
    after it, call this, then drop the old keys. Only the MACs change (no
    record is unpickled or rewritten; versions stay). A record is re-signed
    only if its MAC verifies with one of the keys and its payload matches
    its checksum; records without a MAC are signed only with
    ``sign_unsigned=True`` (turning signing on for an existing store: you
    vouch for what is stored). The others are left as they are and listed
    in the report. Raises StoreError if the store has no signing keys or
    no place for MACs (a GC3Pie table not adopted).
    """
    signer = store._signer
    if signer is None:
        raise StoreError(f"{store._describe()}: resign needs signing keys (signing_keys= or "
                         f"${SIGNING_KEYS_ENV})")
    if not store._can_sign():
        raise StoreError(f"{store._describe()}: this store has no column for MACs (a GC3Pie "
                         "table not adopted yet: run typedstore upgrade first)")
    report = ResignReport()
    for id_ in store.list():
        pid = store._coerce_id(id_)
        for _attempt in range(RESIGN_ATTEMPTS):
            with store._lock:
                try:
                    record = store._read(pid)
                except NotFoundError:
                    break  # removed meanwhile
                reason = _resign_refusal(record, pid, signer, sign_unsigned)
                if reason == "current":
                    report.current += 1
                    break
                if reason is not None:
                    log.warning("%s: record %s not re-signed: %s", store._describe(), pid,
                                reason)
                    report.refused.append((pid, reason))
                    break
                if store._store_mac(pid, record, signer.sign(pid, record.payload)):
                    report.signed += 1
                    break
        else:
            report.refused.append((pid, f"changed by other writers {RESIGN_ATTEMPTS} times "
                                        "while being re-signed"))
    return report


def _resign_refusal(record: Record, pid: Any, signer: Signer, sign_unsigned: bool
                    ) -> str | None:
    """Why ``record`` must not be re-signed, ``"current"`` if it needs nothing."""
    if record.checksum is not None and checksum(record.payload) != record.checksum:
        return "damaged (its payload does not match its checksum)"
    if record.mac is None:
        return None if sign_unsigned else "unsigned (pass sign_unsigned=True to sign it)"
    key = signer.key_of(pid, record.payload, record.mac)
    if key is None:
        return "its MAC was made by none of the keys"
    return "current" if key == 0 else None
