"""`--persistence.file`: the observed counters' state in an SQLite file, so that they survive a
restart.

What is kept, per target and source: the state the counter folds each answer into
(`buckets.ObservedState`): the totals, what each bucket still in the lookback window already
counted, and the newest bucket each label set was seen in. Restored at start, a counter goes on
from its value before the restart, and the next poll, which re-reads the window, counts the
buckets that completed meanwhile once (a restart shorter than `lookback - delay - 30m` loses
none).

How it is kept:
- SQLite (the standard library's), in WAL mode: a save is one transaction, so a kill at any
  moment leaves the last committed save readable, and the poller saves before it publishes, so
  what a scraper was shown is in the file. `synchronous=NORMAL`: a committed save survives the
  process being killed; a power cut or a kernel crash can take back the last saves (never
  corrupting the file), and the window that the next poll re-reads counts their buckets again.
  (FULL, an fsync per save, costs five times the CPU of a save for little: see bench/.)
- One row per (source, target), keyed by the target's id: saving one target writes its row
  only. The row carries a fingerprint of what gives its series their meaning (source,
  dimensions, filters, the target's own settings); a state saved under another fingerprint is
  not applied, and the next save replaces it.
- An exclusive lock (SQLite's exclusive locking mode, held from start to exit): a second
  process on the same file fails at once, whatever the file system.
- A file that cannot be read back (not SQLite, damaged, a newer schema, a row that does not
  decode) is moved aside, never deleted, and the exporter starts afresh.
- A save that fails (disk full, read-only) is reported through `on_save` and logged once per
  change; polling and serving go on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import sys
import threading
import time
import zlib
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from exporter.config import Config, Target
from exporter.pipeline.buckets import ObservedState
from exporter.pipeline.sources import CounterKey, CounterStates, counter_keys
from exporter.vocabulary import CONVERSATION_ANALYTICS, SOURCES_BY_NAME

log = logging.getLogger(__name__)

SOURCE = CONVERSATION_ANALYTICS
"""The `source` of a conversation counter's row; each counter of a target gets its own row."""

CONVERSATION_COUNTER: CounterKey = (CONVERSATION_ANALYTICS, "conversation")


def counter_name(key: CounterKey) -> str:
    """A row's `source`: the source's name for its only counter (`conversation_analytics`,
    `pricing_analytics`), `source.value` where it has several (`message_analytics.sent`)."""
    source, value = key
    return source if len(SOURCES_BY_NAME[source].counts) == 1 else f"{source}.{value}"

APPLICATION_ID = 0x57455850  # "WEXP"
"""Marks the file as this exporter's (`PRAGMA application_id`), like a magic number."""
SCHEMA_VERSION = 1
"""`PRAGMA user_version`; a file of a newer version is not read (moved aside)."""
ENCODING = 1
"""Version of the blobs' layout, stored with each row."""

_SCHEMA = """
CREATE TABLE counter_state (
    source      TEXT NOT NULL,
    target      TEXT NOT NULL,
    target_name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    saved_at    REAL NOT NULL,
    encoding    INTEGER NOT NULL,
    labels      BLOB NOT NULL,
    counts      BLOB NOT NULL,
    checksum    INTEGER NOT NULL,
    PRIMARY KEY (source, target)
) WITHOUT ROWID
"""

_UPSERT = """
INSERT INTO counter_state
    (source, target, target_name, fingerprint, saved_at, encoding, labels, counts, checksum)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (source, target) DO UPDATE SET
    target_name = excluded.target_name,
    fingerprint = excluded.fingerprint,
    saved_at = excluded.saved_at,
    encoding = excluded.encoding,
    labels = excluded.labels,
    counts = excluded.counts,
    checksum = excluded.checksum
"""

_COMPRESSION = 1
"""zlib level: the blobs are mostly small integers and repeated label values; level 1 takes
most of the gain for a fraction of the CPU of higher levels."""
_COMPRESS_FROM = 16384
"""Smaller blobs are stored as they are: setting up zlib costs more CPU than their bytes."""

_NATIVE_LITTLE = sys.byteorder == "little"


class PersistenceError(Exception):
    """The state file cannot be used at all; one line, naming the flag and the file."""


class FileInUse(PersistenceError):
    """Another process holds the file."""


class Unreadable(Exception):
    """The file (or a row of it) cannot be read back as a state."""


def target_key(target: Target) -> str:
    """What identifies a target across restarts: its id, never its name."""
    if target.waba_id is not None:
        return f"waba:{target.waba_id}"
    return f"customer:{target.customer_id}"


def fingerprint(config: Config, target: Target, source: str = SOURCE) -> str:
    """What gives the target's series their meaning; a state saved under another is not used.

    The same things whose change makes a reload start a target's counters afresh: the
    source's dimensions and filters, and the target's own definition (name, id, phone numbers).
    `source` is a row's counter name (`counter_name`).
    """
    name = source.split(".", 1)[0]
    return json.dumps(
        {
            "source": source,
            "dimensions": list(config.source_dimensions(name)),
            "filters": {key: list(values) for key, values in config.source_filters(name)},
            "target": {
                "name": target.name,
                "waba_id": target.waba_id,
                "customer_id": target.customer_id,
                "phone_numbers": list(target.phone_numbers),
            },
        },
        sort_keys=True,
    )


# The blobs, each "R" + bytes or "Z" + zlib(bytes). `labels`: a JSON list of label-value lists,
# in index order. `counts`: a JSON header line, then little-endian int64 arrays: totals,
# last_seen, and each bucket's counted values, in the header's order and lengths.


def _pack(raw: bytes) -> bytes:
    if len(raw) < _COMPRESS_FROM:
        return b"R" + raw
    return b"Z" + zlib.compress(raw, _COMPRESSION)


def _unpack(blob: bytes) -> bytes:
    kind, data = blob[:1], blob[1:]
    if kind == b"R":
        return data
    if kind == b"Z":
        return zlib.decompress(data)
    raise ValueError("unknown blob format")


def encode_labels(state: ObservedState) -> bytes:
    return _pack(json.dumps(list(state.index)).encode("ascii"))


def encode_counts(state: ObservedState) -> bytes:
    buckets = sorted(state.counted_values.items())
    header = {
        "floor": state.floor,
        "baseline": state.baseline,
        "size": len(state.index),
        "totals": len(state.total_values),
        "last_seen": len(state.last_seen),
        "buckets": [[start, len(values)] for start, values in buckets],
    }
    parts = [json.dumps(header).encode("ascii"), b"\n"]
    for values in (state.total_values, state.last_seen, *(v for _, v in buckets)):
        parts.append(_little(values))
    return _pack(b"".join(parts))


def _little(values: array[int]) -> bytes:
    if _NATIVE_LITTLE:
        return values.tobytes()
    swapped = array("q", values)
    swapped.byteswap()
    return swapped.tobytes()


def _int64s(data: memoryview, count: int) -> array[int]:
    values = array("q")
    values.frombytes(data[: count * 8])
    if not _NATIVE_LITTLE:
        values.byteswap()
    return values


def checksum(labels: bytes, counts: bytes) -> int:
    return zlib.crc32(counts, zlib.crc32(labels))


def decode_state(labels: bytes, counts: bytes, width: int) -> ObservedState:
    """The state a row holds; raises `Unreadable` for anything that is not a whole state."""
    try:
        names = json.loads(_unpack(labels))
        raw = _unpack(counts)
        end = raw.index(b"\n")
        header = json.loads(raw[:end])
    except (ValueError, zlib.error) as error:
        raise Unreadable(f"row does not decode: {error}") from None
    if not isinstance(names, list) or not isinstance(header, dict):
        raise Unreadable("row does not decode: wrong shape")
    index: dict[tuple[str, ...], int] = {}
    intern = sys.intern
    for position, values in enumerate(names):
        if (
            not isinstance(values, list)
            or len(values) != width
            or not all(isinstance(v, str) for v in values)
        ):
            raise Unreadable(f"row does not decode: label set {position} is not {width} values")
        index[tuple(intern(v) for v in values)] = position
    size = len(index)
    try:
        floor, baseline = header["floor"], header["baseline"]
        lengths = [header["totals"], header["last_seen"]]
        starts = []
        for start, length in header["buckets"]:
            starts.append(start)
            lengths.append(length)
        valid = (
            header["size"] == size == len(names)
            and all(isinstance(n, int) and 0 <= n <= size for n in lengths)
            and all(isinstance(s, int) for s in starts)
            and isinstance(floor, int)
            and (baseline is None or isinstance(baseline, int))
        )
    except (KeyError, TypeError, ValueError):
        valid = False
    if not valid:
        raise Unreadable("row does not decode: bad header")
    body = memoryview(raw)[end + 1 :]
    if len(body) != 8 * sum(lengths):
        raise Unreadable("row does not decode: arrays of the wrong length")
    arrays = []
    offset = 0
    for length in lengths:
        arrays.append(_int64s(body[offset:], length))
        offset += 8 * length
    totals, last_seen, *counted = arrays
    return ObservedState(
        index=index,
        total_values=totals,
        counted_values=dict(zip(starts, counted, strict=True)),
        floor=floor,
        last_seen=last_seen,
        baseline=baseline,
    )


@dataclass(frozen=True, slots=True)
class SavedRow:
    target_name: str
    fingerprint: str
    saved_at: float
    state: ObservedState


class StateFile:
    """The open, locked state file. Thread-safe: saves from several poll workers are written
    one at a time, each in its own transaction."""

    def __init__(
        self,
        path: str,
        connection: sqlite3.Connection,
        rows: dict[tuple[str, str], SavedRow],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._connection = connection
        self._rows = rows
        self._clock = clock
        self._lock = threading.Lock()
        self._report_lock = threading.Lock()
        self._labels: dict[tuple[str, str], tuple[object, bytes]] = {}
        """Per (target key, counter name): the index object last encoded and its blob (an index
        never changes once made, and a poll that brings no new label set keeps the previous
        one)."""
        self._fingerprints: dict[tuple[Target, str, object], str] = {}
        self._failing: str | None = None
        self.on_save: Callable[[bool, float], None] = lambda ok, when: None
        """Called after every save with (success, time): the self-metrics listen here."""

    def restore(self, config: Config) -> dict[str, dict[CounterKey, ObservedState]]:
        """The saved states of each configured target whose series mean what they meant when
        they were saved, by target name and then by counter (source, value key). Rows of
        targets this process does not poll, or of sources it does not read, are deleted: their
        counting goes on elsewhere, or not at all."""
        restored: dict[str, dict[CounterKey, ObservedState]] = {}
        wanted = {
            (counter_name(counter), target_key(t)): (t, counter)
            for t in config.targets
            for counter in counter_keys(config.layout)
        }
        for key, row in self._rows.items():
            found = wanted.get(key)
            if found is None:
                continue
            target, counter = found
            if row.fingerprint != fingerprint(config, target, key[0]):
                log.info(
                    "target %s: its saved %s counter state was made under other dimensions, "
                    "filters or target settings; those counters start afresh",
                    target.name,
                    key[0],
                )
                continue
            restored.setdefault(target.name, {})[counter] = row.state
        gone = [key for key in self._rows if key not in wanted]
        if gone:
            with self._lock:
                try:
                    with self._connection:
                        self._connection.execute("BEGIN IMMEDIATE")
                        self._connection.executemany(
                            "DELETE FROM counter_state WHERE source = ? AND target = ?", gone
                        )
                except sqlite3.Error as error:
                    log.warning("cannot drop the saved state of unconfigured targets: %s", error)
            log.info(
                "dropped %d saved counter state(s) of targets or sources this process does not "
                "poll",
                len(gone),
            )
        self._rows = {}
        if restored:
            log.info(
                "restored the counter state of %d of %d target(s) from %s",
                len(restored),
                len(config.targets),
                self.path,
            )
        return restored

    def save(
        self, target: Target, config: Config, states: CounterStates | ObservedState
    ) -> bool:
        """Write one target's states, one row per counter, in one transaction; never raises (a
        failure is reported). A lone state is the conversation counter's."""
        if isinstance(states, ObservedState):
            states = {CONVERSATION_COUNTER: states}
        key = target_key(target)
        now = self._clock()
        try:
            rows = []
            encoded: list[tuple[tuple[str, str], object, bytes]] = []
            for counter, state in states.items():
                name = counter_name(counter)
                cached = self._labels.get((key, name))
                if cached is not None and cached[0] is state.index:
                    labels = cached[1]
                else:
                    labels = encode_labels(state)
                counts = encode_counts(state)
                meaning = (target, name, self._meaning(config, counter[0]))
                printed = self._fingerprints.get(meaning)
                if printed is None:
                    printed = self._fingerprints[meaning] = fingerprint(config, target, name)
                rows.append(
                    (
                        name,
                        key,
                        target.name,
                        printed,
                        now,
                        ENCODING,
                        labels,
                        counts,
                        checksum(labels, counts),
                    )
                )
                encoded.append(((key, name), state.index, labels))
            with self._lock:
                if len(rows) == 1:
                    self._connection.execute(_UPSERT, rows[0])
                else:
                    with self._connection:
                        self._connection.execute("BEGIN IMMEDIATE")
                        self._connection.executemany(_UPSERT, rows)
            for cache_key, index, labels in encoded:
                self._labels[cache_key] = (index, labels)
        except Exception as error:  # sqlite3.Error, OSError, MemoryError, a bug of ours
            self._report(f"{type(error).__name__}: {error}", now)
            return False
        self._report(None, now)
        return True

    @staticmethod
    def _meaning(config: Config, source: str) -> object:
        return (config.source_dimensions(source), config.source_filters(source))

    def forget(self, targets: Iterable[Target]) -> None:
        """Drop the rows (every counter's) of targets a reload removed."""
        keys = [(target_key(t),) for t in targets]
        if not keys:
            return
        now = self._clock()
        try:
            with self._lock, self._connection:
                self._connection.execute("BEGIN IMMEDIATE")
                self._connection.executemany("DELETE FROM counter_state WHERE target = ?", keys)
        except sqlite3.Error as error:
            self._report(f"{type(error).__name__}: {error}", now)
            return
        gone = {key for (key,) in keys}
        for cached in [k for k in self._labels if k[0] in gone]:
            del self._labels[cached]

    def _report(self, failure: str | None, now: float) -> None:
        with self._report_lock:
            self._report_locked(failure, now)

    def _report_locked(self, failure: str | None, now: float) -> None:
        # One log line per change, not per save: a full disk fails every poll.
        if failure is not None and self._failing is None:
            log.error(
                "cannot save the counter state to %s (%s); polling and serving go on, and a "
                "restart would go back to the state saved last",
                self.path,
                failure,
            )
        elif failure is None and self._failing is not None:
            log.info("saving the counter state to %s works again", self.path)
        self._failing = failure
        self.on_save(failure is None, now)

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._connection.close()


def open_state_file(path: str, *, clock: Callable[[], float] = time.time) -> StateFile:
    """Open (or create) the state file, lock it and read it back.

    Raises `FileInUse` when another process holds it, `PersistenceError` when it cannot be
    opened at all. A file that cannot be read back is moved aside and a fresh one started.
    """
    where = Path(path)
    if not where.parent.is_dir():
        raise PersistenceError(
            f"--persistence.file: cannot open {path}: directory {where.parent} does not exist"
        )
    if where.is_dir():
        raise PersistenceError(f"--persistence.file: {path} is a directory")
    try:
        connection, rows = _open(path)
    except Unreadable as error:
        moved = _move_aside(path)
        log.warning(
            "the counter state file %s cannot be read back (%s): moved it to %s and starting "
            "afresh",
            path,
            error,
            moved,
        )
        try:
            connection, rows = _open(path)
        except Unreadable as again:
            raise PersistenceError(f"--persistence.file: cannot start {path}: {again}") from None
    return StateFile(path, connection, rows, clock=clock)


def _open(path: str) -> tuple[sqlite3.Connection, dict[tuple[str, str], SavedRow]]:
    try:
        connection = sqlite3.connect(
            path, isolation_level=None, timeout=0, check_same_thread=False
        )
    except sqlite3.Error as error:
        raise PersistenceError(f"--persistence.file: cannot open {path}: {error}") from None
    try:
        rows = _prepare(connection, path)
    except BaseException:
        connection.close()
        raise
    return connection, rows


def _prepare(
    connection: sqlite3.Connection, path: str
) -> dict[tuple[str, str], SavedRow]:
    try:
        # Exclusive locking mode: the lock taken by the first write is held until the
        # connection closes (the process exits, even by SIGKILL). The WAL index then lives in
        # the process's memory: there is no -shm file, and no other process can read along.
        connection.execute("PRAGMA locking_mode = EXCLUSIVE")
        connection.execute("BEGIN EXCLUSIVE")
        connection.execute("COMMIT")
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        connection.execute("PRAGMA synchronous = NORMAL")
        # After a checkpoint the WAL is cut back to this, rather than keeping its largest size.
        connection.execute("PRAGMA journal_size_limit = 4194304")
        if str(mode).lower() != "wal":
            raise PersistenceError(
                f"--persistence.file: {path}: the file system does not allow SQLite's WAL mode"
            )
        return _read(connection)
    except sqlite3.Error as error:
        name = _error_name(error)
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            raise FileInUse(
                f"--persistence.file: {path} is in use by another process"
            ) from None
        if name.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_READONLY", "SQLITE_AUTH")):
            raise PersistenceError(f"--persistence.file: cannot open {path}: {error}") from None
        if name.startswith("SQLITE_FULL"):
            raise PersistenceError(f"--persistence.file: {path}: {error}") from None
        raise Unreadable(str(error)) from None


_NAMES_BY_MESSAGE = {
    "database is locked": "SQLITE_BUSY",
    "database table is locked": "SQLITE_LOCKED",
    "unable to open database file": "SQLITE_CANTOPEN",
    "attempt to write a readonly database": "SQLITE_READONLY",
    "database or disk is full": "SQLITE_FULL",
}


def _error_name(error: sqlite3.Error) -> str:
    """SQLite's error name (Python 3.11 gives it; 3.10 only the message)."""
    name = getattr(error, "sqlite_errorname", None)
    if name:
        return str(name)
    return _NAMES_BY_MESSAGE.get(str(error), "")


def _read(connection: sqlite3.Connection) -> dict[tuple[str, str], SavedRow]:
    application_id = connection.execute("PRAGMA application_id").fetchone()[0]
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    tables = {
        row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    if application_id == 0 and version == 0 and not tables:
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(_SCHEMA)
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return {}
    if application_id != APPLICATION_ID:
        raise Unreadable("not a whatsapp-exporter state file")
    if version != SCHEMA_VERSION:
        raise Unreadable(f"schema version {version}, this exporter reads {SCHEMA_VERSION}")
    check = connection.execute("PRAGMA quick_check").fetchall()
    if check != [("ok",)]:
        raise Unreadable(f"integrity check failed: {check[0][0]}")
    rows: dict[tuple[str, str], SavedRow] = {}
    for (
        source,
        target,
        name,
        print_,
        saved_at,
        encoding,
        labels,
        counts,
        crc,
    ) in connection.execute(
        "SELECT source, target, target_name, fingerprint, saved_at, encoding, labels, counts, "
        "checksum FROM counter_state"
    ):
        if encoding != ENCODING:
            raise Unreadable(f"row {source}/{target}: encoding {encoding}")
        if checksum(labels, counts) != crc:
            raise Unreadable(f"row {source}/{target}: checksum mismatch")
        try:
            width = len(json.loads(print_)["dimensions"])
        except (ValueError, KeyError, TypeError):
            raise Unreadable(f"row {source}/{target}: bad fingerprint") from None
        try:
            state = decode_state(labels, counts, width)
        except Unreadable as error:
            raise Unreadable(f"row {source}/{target}: {error}") from None
        rows[(source, target)] = SavedRow(name, print_, saved_at, state)
    return rows


def _move_aside(path: str) -> str:
    """Rename the file (and its WAL) out of the way; never delete it."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    moved = f"{path}.unreadable-{stamp}"
    number = 1
    while os.path.exists(moved):
        number += 1
        moved = f"{path}.unreadable-{stamp}-{number}"
    try:
        os.rename(path, moved)
        for suffix in ("-wal", "-shm", "-journal"):
            if os.path.exists(path + suffix):
                os.rename(path + suffix, moved + suffix)
    except OSError as error:
        raise PersistenceError(
            f"--persistence.file: {path} cannot be read back and cannot be moved aside: "
            f"{error.strerror}"
        ) from None
    return moved
