"""The fingerprint index: SQLite (WAL) in the data folder by default, PostgreSQL for a team's shared index.

One schema for both, versioned in `parentage_meta`; `MIGRATIONS[k]` takes a database from version k to k + 1,
all in one transaction when it is opened. Fingerprints are content-addressed (`blobs`, keyed by SHA-256) and an
entry (`fingerprints`, one per (ref, commit)) is written with its blob in one transaction, so a writer killed
mid-insert leaves either the whole entry or nothing. SQLite runs in WAL mode, so readers work while a writer
writes; PostgreSQL gives the same by MVCC.

    store = open_store("postgresql://user@host/db")   # or a path, or None for the default
    store.add(fp); store.entries(); store.load(entry); store.remove("org/name")
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..constants import INDEX_BUSY_SECONDS, INDEX_MAX_BLOB, index_url
from ..errors import FormatError, IndexStoreError
from .fingerprint import Fingerprint
from .sketch import SKETCH_VERSION, Sketch, scan_row, take_sketch

SCHEMA_VERSION = 3

# Each entry: the statements taking a database from version k to k + 1, with {blob}, {id} and {big} filled in
# per dialect.
MIGRATIONS: list[list[str]] = [
    [  # 0 -> 1: entries and their content-addressed blobs
        "CREATE TABLE blobs (digest TEXT PRIMARY KEY, data {blob} NOT NULL)",
        "CREATE TABLE fingerprints ("
        " id {id}, ref TEXT NOT NULL, commit_id TEXT NOT NULL, digest TEXT NOT NULL REFERENCES blobs(digest),"
        " arch TEXT, n_layers INTEGER, hidden_size INTEGER, n_params {big}, n_bytes {big} NOT NULL,"
        " declared TEXT NOT NULL, added_at TEXT NOT NULL, tool_version TEXT NOT NULL, UNIQUE (ref, commit_id))",
    ],
    [  # 1 -> 2: where the entry came from (path, hub, url), for `index list`
        "ALTER TABLE fingerprints ADD COLUMN source TEXT",
        "CREATE INDEX fingerprints_ref ON fingerprints (ref)",
    ],
    [  # 2 -> 3: a sketch per fingerprint (the scan's part apart, so a query reads 2 KB a model), cached pair results
        "CREATE TABLE sketches (digest TEXT PRIMARY KEY REFERENCES blobs(digest) ON DELETE CASCADE,"
        " version INTEGER NOT NULL, scan {blob} NOT NULL, data {blob} NOT NULL)",
        "CREATE TABLE pairs (a TEXT NOT NULL REFERENCES blobs(digest) ON DELETE CASCADE,"
        " b TEXT NOT NULL REFERENCES blobs(digest) ON DELETE CASCADE, setting TEXT NOT NULL, doc TEXT NOT NULL,"
        " PRIMARY KEY (a, b, setting))",
    ],
]
DIALECTS = {
    "sqlite": {"blob": "BLOB", "id": "INTEGER PRIMARY KEY AUTOINCREMENT", "big": "INTEGER"},
    "postgresql": {"blob": "BYTEA", "id": "BIGSERIAL PRIMARY KEY", "big": "BIGINT"},
}
COLUMNS = "id, ref, commit_id, digest, arch, n_layers, hidden_size, n_params, n_bytes, declared, added_at, tool_version, source"


@dataclass(frozen=True)
class Entry:
    """One indexed model (its fingerprint is loaded on demand)."""

    id: int
    ref: str
    commit: str
    digest: str
    arch: str | None
    n_layers: int | None
    hidden_size: int | None
    n_params: int | None
    n_bytes: int
    declared: dict
    added_at: str
    tool_version: str
    source: str | None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("id", "ref", "commit", "digest", "arch", "n_layers", "hidden_size",
                                              "n_params", "n_bytes", "added_at", "tool_version", "source", "declared")}


def open_store(url: str | None = None, create: bool = False) -> "Store":
    """The index at `url` (a SQLite path, `sqlite:///path`, `postgresql://...`, or a pack by path, URL or
    `hf://datasets/org/name`, read only: index/pack.py; default: the data folder's).
    Reading commands pass create=False: a missing index is an error, never an empty result."""
    url = index_url(url)
    from .pack import is_pack_ref, open_pack

    if is_pack_ref(url):  # a pack, queried in place (read only)
        if create:
            raise IndexStoreError(url, "is a pack, which is read only: give an index database to write to, and "
                                       "`parentage index import` the pack into it")
        return open_pack(url)
    if url.startswith(("postgresql://", "postgres://")):
        return Store(_connect_postgres(url), "postgresql", _redacted(url))
    path = Path(url[len("sqlite:///") - 1:] if url.startswith("sqlite:///") else url).expanduser()
    return Store(_connect_sqlite(path, create), "sqlite", str(path))


def _redacted(url: str) -> str:
    """The URL with its password removed, for error lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _connect_sqlite(path: Path, create: bool) -> sqlite3.Connection:
    if path.is_dir():
        raise IndexStoreError(path, "is a folder; give the index's database file")
    if path.exists() and not path.is_file():  # a FIFO or device could block or never end
        raise IndexStoreError(path, "is not a regular file; give the index's database file")
    if not path.exists():
        if not create:
            raise IndexStoreError(path, "no index here; add models with `parentage index add MODEL`")
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, timeout=INDEX_BUSY_SECONDS, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as e:
        raise IndexStoreError(path, f"not a usable SQLite database ({e})") from None
    return conn


def _connect_postgres(url: str):
    try:
        import psycopg
    except ImportError:
        raise IndexStoreError(_redacted(url), "a PostgreSQL index needs psycopg: pip install 'parentage[postgres]'") from None
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise IndexStoreError(_redacted(url), f"cannot connect to PostgreSQL: {first}") from None


class Store:
    def __init__(self, conn, dialect: str, where: str):
        self.conn, self.dialect, self.where = conn, dialect, where
        try:
            self._migrate()
        except IndexStoreError:
            self.close()
            raise
        except Exception as e:
            self.close()
            raise IndexStoreError(where, f"not a usable index ({type(e).__name__}: {_first_line(e)})") from None

    # -- plumbing -------------------------------------------------------------------------------------------------

    def _sql(self, q: str) -> str:
        return q.replace("?", "%s") if self.dialect == "postgresql" else q

    def _run(self, q: str, args: tuple = ()) -> list:
        try:
            cur = self.conn.execute(self._sql(q), args)
            return cur.fetchall() if cur.description else []
        except Exception as e:
            if _is_db_error(e):
                raise IndexStoreError(self.where, f"database error: {_first_line(e)}") from None
            raise

    def _transaction(self):
        return _Transaction(self)

    def _tables(self) -> set[str]:
        if self.dialect == "sqlite":
            rows = self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        else:
            rows = self.conn.execute("SELECT table_name FROM information_schema.tables "
                                     "WHERE table_schema = current_schema()").fetchall()
        return {r[0] for r in rows if not r[0].startswith("sqlite_")}

    def _version(self) -> int | None:
        """The schema version, None for an empty database; a foreign or damaged one is an error."""
        tables = self._tables()
        if "parentage_meta" not in tables:
            if tables:
                raise IndexStoreError(self.where, "is a database but not a parentage index (it holds tables "
                                                  f"{', '.join(sorted(tables)[:5])}); give another --db")
            return None
        row = self.conn.execute(self._sql("SELECT value FROM parentage_meta WHERE key = ?"), ("schema_version",)).fetchone()
        try:
            version = int(row[0]) if row else -1
        except ValueError:
            version = -1
        if version < 0:
            raise IndexStoreError(self.where, "parentage index has no valid schema_version")
        if version > SCHEMA_VERSION:
            raise IndexStoreError(self.where, f"index made by a newer parentage (schema {version}; this one reads "
                                              f"up to {SCHEMA_VERSION}): upgrade parentage")
        return version

    def _migrate(self) -> None:
        if self._version() == SCHEMA_VERSION:  # the usual case: read only, so a reader never waits on a writer
            return
        with self._transaction():  # create or migrate, once: another process may have done it meanwhile
            version = self._version()
            if version is None:
                self.conn.execute("CREATE TABLE parentage_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                self.conn.execute(self._sql("INSERT INTO parentage_meta VALUES (?, ?)"), ("schema_version", "0"))
                version = 0
            for k in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[k]:
                    self.conn.execute(statement.format(**DIALECTS[self.dialect]))
            self.conn.execute(self._sql("UPDATE parentage_meta SET value = ? WHERE key = ?"),
                              (str(SCHEMA_VERSION), "schema_version"))

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- verbs ----------------------------------------------------------------------------------------------------

    def has(self, ref: str, commit: str) -> bool:
        return bool(self._run("SELECT 1 FROM fingerprints WHERE ref = ? AND commit_id = ?", (ref, commit)))

    def add(self, fp: Fingerprint, replace: bool = False) -> bool:
        """Store one fingerprint; False (nothing written) when (ref, commit) is indexed already and not replaced."""
        blob = fp.to_bytes()
        digest = hashlib.sha256(blob).hexdigest()
        s = fp.meta["summary"]
        with self._transaction():
            old = self._run("SELECT id, digest FROM fingerprints WHERE ref = ? AND commit_id = ?", (fp.ref, fp.commit))
            if old and not replace:
                return False
            if old:
                self._run("DELETE FROM fingerprints WHERE id = ?", (old[0][0],))
                self._drop_blob(old[0][1])
            if not self._run("SELECT 1 FROM blobs WHERE digest = ?", (digest,)):
                self._run("INSERT INTO blobs (digest, data) VALUES (?, ?)", (digest, blob))
                self._put_sketch(digest, sketch_of(fp))
            self._run("INSERT INTO fingerprints (ref, commit_id, digest, arch, n_layers, hidden_size, n_params, "
                      "n_bytes, declared, added_at, tool_version, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (fp.ref, fp.commit, digest, s.get("family"), s.get("n_layers"), s.get("hidden_size"),
                       s.get("n_params"), len(blob), json.dumps(fp.meta["declared"]),
                       time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), fp.meta["tool_version"], fp.meta["source"]))
        return True

    def _put_sketch(self, digest: str, sk: Sketch) -> None:
        self._run("DELETE FROM sketches WHERE digest = ?", (digest,))
        self._run("INSERT INTO sketches (digest, version, scan, data) VALUES (?, ?, ?, ?)",
                  (digest, SKETCH_VERSION, scan_row(sk), sk.to_bytes()))

    def scan_rows(self, entries: list[Entry], progress=None) -> dict[str, bytes]:
        """The scan part of every entry's sketch, by digest; a sketch missing or of another version (an index
        made before sketches, or by another parentage) is computed from its fingerprint and stored first."""
        rows = {str(d): bytes(b) for d, v, b in self._run("SELECT digest, version, scan FROM sketches")
                if v == SKETCH_VERSION}
        missing = sorted({e.digest for e in entries} - set(rows))
        for digest in missing:
            entry = next(e for e in entries if e.digest == digest)
            sk = sketch_of(self.load(entry))
            with self._transaction():
                self._put_sketch(digest, sk)
            rows[digest] = scan_row(sk)
            if progress is not None:
                progress(1)
        return rows

    def sketch(self, entry: Entry) -> Sketch:
        rows = self._run("SELECT version, data FROM sketches WHERE digest = ?", (entry.digest,))
        if not rows or rows[0][0] != SKETCH_VERSION:
            self.scan_rows([entry])
            rows = self._run("SELECT version, data FROM sketches WHERE digest = ?", (entry.digest,))
        try:
            return Sketch.from_bytes(bytes(rows[0][1]), f"{self.where} [{entry.ref}]")
        except FormatError as e:
            raise IndexStoreError(e.where, e.problem) from None

    def pair(self, a: str, b: str, setting: str) -> dict | None:
        """A cached pair result (fingerprint digests a, b under `setting`), or None."""
        rows = self._run("SELECT doc FROM pairs WHERE a = ? AND b = ? AND setting = ?", (a, b, setting))
        if not rows:
            return None
        try:
            doc = json.loads(rows[0][0])
        except (TypeError, ValueError):
            return None  # a damaged cache entry is recomputed, never trusted
        return doc if isinstance(doc, dict) else None

    def put_pair(self, a: str, b: str, setting: str, doc: dict) -> None:
        with self._transaction():
            self._run("DELETE FROM pairs WHERE a = ? AND b = ? AND setting = ?", (a, b, setting))
            self._run("INSERT INTO pairs (a, b, setting, doc) VALUES (?, ?, ?, ?)", (a, b, setting, json.dumps(doc)))

    def _drop_blob(self, digest: str) -> None:
        if not self._run("SELECT 1 FROM fingerprints WHERE digest = ?", (digest,)):
            self._run("DELETE FROM blobs WHERE digest = ?", (digest,))

    def entries(self, ref: str | None = None) -> list[Entry]:
        where, args = ("WHERE ref = ?", (ref,)) if ref is not None else ("", ())
        rows = self._run(f"SELECT {COLUMNS} FROM fingerprints {where} ORDER BY id", args)
        return [self._entry(r) for r in rows]

    def _entry(self, r) -> Entry:
        try:
            declared = json.loads(r[9])
            declared = declared if isinstance(declared, dict) else {}
        except (TypeError, ValueError):
            raise IndexStoreError(self.where, f"entry {r[1]!r} has a corrupt declared-lineage field") from None
        return Entry(int(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4], r[5], r[6], r[7], int(r[8]), declared, str(r[10]),
                     str(r[11]), r[12])

    def find(self, ref: str) -> list[Entry]:
        """Entries by ref, by id ('#3'), or by a unique prefix of the commit."""
        if ref.startswith("#") and ref[1:].isdigit():
            rows = self._run(f"SELECT {COLUMNS} FROM fingerprints WHERE id = ?", (int(ref[1:]),))
            return [self._entry(r) for r in rows]
        found = self.entries(ref)
        if not found and len(ref) >= 7:
            found = [e for e in self.entries() if e.commit.startswith(ref)]
        return found

    def load(self, entry: Entry) -> Fingerprint:
        rows = self._run("SELECT data FROM blobs WHERE digest = ?", (entry.digest,))
        if not rows:
            raise IndexStoreError(self.where, f"entry {entry.ref!r} has no stored fingerprint")
        blob = bytes(rows[0][0])
        if len(blob) > INDEX_MAX_BLOB or hashlib.sha256(blob).hexdigest() != entry.digest:
            raise IndexStoreError(self.where, f"the fingerprint of {entry.ref!r} is corrupt (its digest does not match)")
        try:
            return Fingerprint.from_bytes(blob, f"{self.where} [{entry.ref}]")
        except FormatError as e:
            raise IndexStoreError(e.where, e.problem) from None

    def remove(self, ref: str) -> int:
        """Remove every entry `find(ref)` names; how many."""
        found = self.find(ref)
        with self._transaction():
            for e in found:
                self._run("DELETE FROM fingerprints WHERE id = ?", (e.id,))
                self._drop_blob(e.digest)
        return len(found)


def sketch_of(fp: Fingerprint) -> Sketch:
    with fp.open() as ck:
        return take_sketch(ck)


class _Transaction:
    """BEGIN (IMMEDIATE on SQLite: take the write lock up front, so two writers never deadlock) ... COMMIT, or
    ROLLBACK on any exception."""

    def __init__(self, store: Store):
        self.store = store

    def __enter__(self):
        begin = "BEGIN IMMEDIATE" if self.store.dialect == "sqlite" else "BEGIN"
        try:
            self.store.conn.execute(begin)
        except Exception as e:
            if _is_db_error(e):
                raise IndexStoreError(self.store.where, f"not a usable database ({_first_line(e)})") from None
            raise
        return self

    def __exit__(self, kind, exc, tb):
        self.store.conn.execute("ROLLBACK" if kind else "COMMIT")
        return False


def _is_db_error(e: BaseException) -> bool:
    if isinstance(e, sqlite3.Error):
        return True
    return type(e).__module__.startswith("psycopg")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
