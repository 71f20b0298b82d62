"""A persistent stat cache: (path, size, mtime, ctime, inode) -> content digest.

It lets a no-op run cost only `stat` calls: an unchanged large model is never read
twice. The cache is a hint, never the truth:

- an entry is used only when every stat field matches, and only if the file had
  not changed for a while when it was hashed ("racy" entries, as git calls them,
  are re-hashed: a file rewritten within the timestamp granularity could otherwise
  keep a stale digest);
- a corrupt or foreign database file is discarded and rebuilt;
- if the cache cannot be used at all (read-only disk, locked), hashing goes on
  without it.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from pathlib import Path

SCHEMA_VERSION = 1
RACY_WINDOW_NS = 2_000_000_000
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class StatCache:
    def __init__(self, path: Path | None):
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple] = []
        self._memory: dict[str, tuple] = {}  # rows fetched by preload()
        self._lock = threading.RLock()  # one connection, shared by the executor's threads
        if path is not None:
            self._db = self._open(path)

    def _open(self, path: Path) -> sqlite3.Connection | None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return self._connect(path)
        except sqlite3.OperationalError:  # busy or read-only: not corrupt, so leave it be
            return None
        except sqlite3.DatabaseError:  # not a database, malformed, or another schema
            self._discard(path)
        except OSError:
            return None
        try:
            return self._connect(path)
        except (sqlite3.DatabaseError, OSError):
            return None

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=2.0, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
                " ctime_ns INTEGER, inode INTEGER, device INTEGER, digest TEXT, hashed_at_ns INTEGER)"
            )
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"stat cache schema {row[0]!r}, expected {SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _discard(path: Path) -> None:
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(f"{path}{suffix}")
            except FileNotFoundError:
                pass

    def preload(self, folder: str) -> None:
        """Fetch the entries of every file below `folder` in one query (for a folder
        whose files will all be looked up, such as a build folder)."""
        prefix = folder.rstrip("/") + "/"
        with self._lock:
            if self._db is None:
                return
            try:
                rows = self._db.execute(
                    "SELECT path, size, mtime_ns, ctime_ns, inode, device, digest, hashed_at_ns FROM files"
                    " WHERE path >= ? AND path < ?",
                    (prefix, prefix[:-1] + chr(ord("/") + 1)),
                ).fetchall()
            except sqlite3.DatabaseError:
                return
            for path, *row in rows:
                self._memory[path] = tuple(row)

    def _row(self, path: str) -> tuple | None:
        with self._lock:
            if self._db is None:
                return None
            row = self._memory.get(path)
            if row is None:
                try:
                    row = self._db.execute(
                        "SELECT size, mtime_ns, ctime_ns, inode, device, digest, hashed_at_ns FROM files WHERE path = ?",
                        (path,),
                    ).fetchone()
                except sqlite3.OperationalError:  # busy: go on without the hint
                    return None
                except sqlite3.DatabaseError:
                    self._reset()
                    return None
        return row

    def lookup(self, path: str, stat: os.stat_result) -> str | None:
        """The digest recorded for this exact file state, or None."""
        row = self._row(path)
        if row is None:
            return None
        size, mtime_ns, ctime_ns, inode, device, digest, hashed_at_ns = row
        if (size, mtime_ns, ctime_ns, inode, device) != (
            stat.st_size,
            stat.st_mtime_ns,
            stat.st_ctime_ns,
            stat.st_ino,
            stat.st_dev,
        ):
            return None
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            return None
        if not isinstance(hashed_at_ns, int) or max(mtime_ns, ctime_ns) + RACY_WINDOW_NS > hashed_at_ns:
            return None
        return digest

    def store(self, path: str, stat: os.stat_result, digest: str, hashed_at_ns: int) -> None:
        """Remember a digest computed at `hashed_at_ns` (taken before reading the file)."""
        self._put(
            path, (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev, digest, hashed_at_ns)
        )

    # A folder's row (its path with a trailing slash, size -1): the fingerprint of every file's
    # stat in it when it was last found to match its stamp, like git's index for a work tree.

    def folder_known_clean(self, folder: str, fingerprint: str) -> bool:
        """Whether the folder, listed with exactly this fingerprint, matched its stamp before
        (and had been still for the racy window then)."""
        row = self._row(folder.rstrip("/") + "/")
        if row is None:
            return False
        size, newest_ns, _, _, _, recorded, hashed_at_ns = row
        return (
            size == -1
            and recorded == fingerprint
            and isinstance(hashed_at_ns, int)
            and isinstance(newest_ns, int)
            and newest_ns + RACY_WINDOW_NS <= hashed_at_ns
        )

    def remember_folder_clean(self, folder: str, fingerprint: str, newest_ns: int, checked_at_ns: int) -> None:
        """Remember that the folder, listed with this fingerprint (its files' newest change at
        `newest_ns`), matched its stamp when checked at `checked_at_ns`."""
        self._put(folder.rstrip("/") + "/", (-1, newest_ns, newest_ns, 0, 0, fingerprint, checked_at_ns))

    def _put(self, path: str, row: tuple) -> None:
        with self._lock:
            if self._db is None:
                return
            self._pending.append((path, *row))
            self._memory[path] = row  # later lookups in this run see it before it is flushed

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if self._db is None or not self._pending:
            return
        rows, self._pending = self._pending, []
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
        except sqlite3.OperationalError:  # locked by another reconciler: a hint lost, nothing more
            self._rollback()
        except sqlite3.DatabaseError:
            self._reset()

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.DatabaseError:
            pass

    def _reset(self) -> None:
        """The database went bad under us: throw it away and start again."""
        with self._lock:
            if self._db is not None:
                self._db.close()
            self._db = None
            self._pending = []
            self._memory = {}
            if self.path is not None:
                self._discard(self.path)
                self._db = self._open(self.path)

    def close(self) -> None:
        with self._lock:
            self._flush()
            if self._db is not None:
                self._db.close()
                self._db = None


def now_ns() -> int:
    return time.time_ns()
