"""The match store: one SQLite database (WAL), ``arena.db`` in the arena home
(``arena.core.cache.arena_home``: ``$ARENA_HOME``, else ``~/.local/share/backdoor-arena``).

Commands that only read (``matches list``, ``leaderboard``) open the store
with ``readonly=True``: they create nothing and work in a read-only arena
home. A store file that is not a database is one clear error, not a traceback.

A match row is written once, when the match ends (successfully or with an
error), inside one transaction: a killed tournament loses at most the match
in flight and never leaves a partial row. The natural key (scenario digest,
agents and versions, seed, rounds) is unique, so a resumed tournament skips
what is stored and a re-run of a failed match replaces its error row.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from arena.core.cache import arena_home
from arena.core.errors import ArenaError
from arena.results.record import ControlRecord, MatchRecord

__all__ = ["ControlRecord", "MatchRecord", "Store", "require_writable_home"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS matches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scenario TEXT NOT NULL,
    scenario_digest TEXT NOT NULL,
    attacker TEXT NOT NULL,
    attacker_version TEXT NOT NULL,
    defender TEXT NOT NULL,
    defender_version TEXT NOT NULL,
    seed INTEGER NOT NULL,
    rounds INTEGER NOT NULL,
    status TEXT NOT NULL,            -- 'ok' or 'error'
    outcome REAL,                    -- attacker's score s in [0, 1]
    reason TEXT,
    metrics TEXT,                    -- JSON: last round's metrics
    round_records TEXT,              -- JSON: every round
    error TEXT,
    device TEXT,
    code_version TEXT,
    started_at TEXT,
    duration_s REAL,
    UNIQUE (scenario_digest, attacker, attacker_version, defender, defender_version, seed, rounds)
);
CREATE TABLE IF NOT EXISTS sweeps (        -- efficacy-specificity curves (arena.run.sweep)
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scenario TEXT NOT NULL,
    scenario_digest TEXT NOT NULL,
    attacker TEXT NOT NULL,
    seed INTEGER NOT NULL,
    fractions TEXT NOT NULL,         -- JSON list, sorted
    points TEXT NOT NULL,            -- JSON: [{fraction, asr, cad, within_budget}]
    auc REAL,
    created_at TEXT,
    UNIQUE (scenario_digest, attacker, seed, fractions)
);
CREATE TABLE IF NOT EXISTS controls (      -- a defender on one more benign model (arena.run.controls)
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scenario TEXT NOT NULL,
    scenario_digest TEXT NOT NULL,
    defender TEXT NOT NULL,
    defender_version TEXT NOT NULL,
    seed INTEGER NOT NULL,
    member INTEGER NOT NULL,
    result TEXT NOT NULL,            -- JSON: flagged, verdict, fpr, cad, suspected_target, aiv, aiv_max, fault
    code_version TEXT,
    created_at TEXT,
    UNIQUE (scenario_digest, defender, defender_version, seed, member)
);
"""


# The layout of the rows (PRAGMA user_version); ``Store._migrate`` upgrades an older store when it is opened
# for writing. 1: scenario digests without the seed lists.
STORE_VERSION = 1


def _writable(path: Path) -> bool:
    """Whether ``path`` (a folder: a new file in it; a file: the file itself) can be written.

    Tried, not inferred from mode bits: ``os.access`` answers yes to root on any
    folder and knows nothing of Landlock or other security modules, under which
    the first real write would fail after minutes of training.
    """
    try:
        if path.is_dir():
            with tempfile.TemporaryFile(dir=path):
                pass
        else:
            os.close(os.open(path, os.O_WRONLY))  # opening for writing changes nothing
        return True
    except OSError:
        return False


def require_writable_home(home: Path | None = None) -> Path:
    """The arena home, created if need be; an ArenaError naming it when nothing can be written there.

    Commands that train call this first, so a read-only home fails before
    minutes of training rather than when the result is saved.
    """
    home = home or arena_home()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArenaError(f"cannot create the arena home {home}: {exc.strerror or exc}",
                         hint="set ARENA_HOME to a writable folder") from None
    if not _writable(home):
        raise ArenaError(f"the arena home {home} is not writable (it holds the match store and model cache)",
                         hint="set ARENA_HOME to a writable folder, or use read-only commands only")
    return home


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection that never writes: an empty in-memory store when there is no file yet."""
    if not path.exists():
        conn = sqlite3.connect(":memory:")  # nothing stored yet; create nothing on disk
        conn.executescript(SCHEMA)
        return conn
    if _writable(path.parent) and _writable(path):
        return sqlite3.connect(path, timeout=60)  # a plain reader sees a concurrent writer's WAL
    uri = path.resolve().as_uri()
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        # A WAL database whose -shm file cannot be created (read-only folder): no
        # writer can be at work there either, so read the file as it stands.
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=60)


class Store:
    def __init__(self, path: Path | None = None, readonly: bool = False) -> None:
        self.path = path or arena_home() / "arena.db"
        if not readonly:
            require_writable_home(self.path.parent)
        try:
            if readonly:
                self._conn = _connect_readonly(self.path)
                # Reading the schema is what fails on a file that is not a database.
                self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            else:
                self._conn = sqlite3.connect(self.path, timeout=60)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.executescript(SCHEMA)
                self._migrate()
        except sqlite3.OperationalError as exc:  # locked, or no permission: the file may be fine
            raise ArenaError(f"cannot open the match store {self.path}: {exc}",
                             hint=f"check that {self.path.parent} is writable and no other process holds the store"
                             ) from None
        except sqlite3.DatabaseError as exc:  # not a database, or a damaged one
            raise ArenaError(f"the match store {self.path} is not a usable SQLite database ({exc})",
                             hint=f"move it aside (mv {self.path} {self.path}.broken); the next run starts a "
                                  "fresh, empty store") from None

    def _migrate(self) -> None:
        """Bring a store written by an older arena up to ``STORE_VERSION`` (SQLite's ``user_version``).

        Version 1 (2026-12-06): scenario digests no longer hash the seed lists
        (``arena.results.digests``); rows keyed by a scenario's legacy digest are
        re-keyed to its current one, so the seeds already played stay played.
        """
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        if version >= STORE_VERSION:
            return
        from arena.results.digests import legacy_map
        with self._conn:
            for table in ("matches", "sweeps"):
                names = [n for (n,) in self._conn.execute(f"SELECT DISTINCT scenario FROM {table}")]
                for (name, old), new in legacy_map(names).items():
                    # OR IGNORE: a row already stored under the new key wins over its legacy twin
                    self._conn.execute(f"UPDATE OR IGNORE {table} SET scenario_digest=? "
                                       "WHERE scenario=? AND scenario_digest=?", (new, name, old))
            self._conn.execute(f"PRAGMA user_version={STORE_VERSION}")

    def close(self) -> None:
        self._conn.close()

    def save(self, r: MatchRecord) -> int:
        """Store ``r``, replacing a stored match with the same natural key, and return its row id."""
        with self._conn:  # one transaction
            self._conn.execute(
                """INSERT INTO matches (scenario, scenario_digest, attacker, attacker_version, defender,
                       defender_version, seed, rounds, status, outcome, reason, metrics, round_records,
                       error, device, code_version, started_at, duration_s)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT (scenario_digest, attacker, attacker_version, defender, defender_version,
                                seed, rounds)
                   DO UPDATE SET status=excluded.status, outcome=excluded.outcome, reason=excluded.reason,
                       metrics=excluded.metrics, round_records=excluded.round_records, error=excluded.error,
                       device=excluded.device, code_version=excluded.code_version,
                       started_at=excluded.started_at, duration_s=excluded.duration_s""",
                (r.scenario, r.scenario_digest, r.attacker, r.attacker_version, r.defender, r.defender_version,
                 r.seed, r.rounds, r.status, r.outcome, r.reason, json.dumps(r.metrics),
                 json.dumps(r.round_records), r.error, r.device, r.code_version, r.started_at, r.duration_s),
            )
            # After an update (the row existed) lastrowid is not that row's id: look it up by its key.
            found = self.stored_id(r)
            assert found is not None, "a match row just written is found by its key"
            return found

    def stored_id(self, r: MatchRecord) -> int | None:
        """The id of the stored match that saving ``r`` would replace (same scenario digest, agents and
        versions, seed and rounds), or None."""
        row = self._conn.execute(
            """SELECT id FROM matches WHERE scenario_digest=? AND attacker=? AND attacker_version=?
               AND defender=? AND defender_version=? AND seed=? AND rounds=?""",
            (r.scenario_digest, r.attacker, r.attacker_version, r.defender, r.defender_version, r.seed, r.rounds),
        ).fetchone()
        return None if row is None else int(row[0])

    def get(self, match_id: int) -> MatchRecord | None:
        """One stored match by its id, or None."""
        cur = self._conn.execute("SELECT * FROM matches WHERE id=?", (match_id,))
        rows = self._records(cur)
        return rows[0] if rows else None

    def max_id(self) -> int | None:
        """The highest stored match id (None when the store is empty): for 'unknown id' hints."""
        row = self._conn.execute("SELECT max(id) FROM matches").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def save_sweep(self, result: Any) -> None:
        """Store an ``arena.run.sweep.SweepResult`` (replacing the same sweep run before)."""
        import datetime as dt

        points = [dataclasses.asdict(p) for p in result.points]
        fractions = json.dumps(sorted(p["fraction"] for p in points))
        with self._conn:
            self._conn.execute(
                """INSERT INTO sweeps (scenario, scenario_digest, attacker, seed, fractions, points, auc, created_at)
                   VALUES (?,?,?,?,?,?,?,?)
                   ON CONFLICT (scenario_digest, attacker, seed, fractions)
                   DO UPDATE SET points=excluded.points, auc=excluded.auc, created_at=excluded.created_at""",
                (result.scenario, result.scenario_digest, result.attacker, result.seed, fractions,
                 json.dumps(points), result.auc, dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")),
            )

    def sweeps(self, scenario: str | None = None) -> list[dict[str, Any]]:
        q, args = "SELECT * FROM sweeps", []
        if scenario:
            q += " WHERE scenario=?"
            args.append(scenario)
        cur = self._conn.execute(q + " ORDER BY id", args)
        cols = [c[0] for c in cur.description]
        rows = [dict(zip(cols, r)) for r in cur.fetchall()]
        for r in rows:
            r["points"] = json.loads(r["points"])
            r["fractions"] = json.loads(r["fractions"])
        return rows

    def save_control(self, c: ControlRecord) -> None:
        """Store one extra control run, replacing the same run stored before (a fault re-run)."""
        with self._conn:
            self._conn.execute(
                """INSERT INTO controls (scenario, scenario_digest, defender, defender_version, seed, member,
                                         result, code_version, created_at) VALUES (?,?,?,?,?,?,?,?,?)
                   ON CONFLICT (scenario_digest, defender, defender_version, seed, member)
                   DO UPDATE SET result=excluded.result, code_version=excluded.code_version,
                                 created_at=excluded.created_at""",
                (c.scenario, c.scenario_digest, c.defender, c.defender_version, c.seed, c.member,
                 json.dumps(c.result, sort_keys=True), c.code_version, c.created_at))

    def controls(self, digest: str | None = None, scenario: str | None = None) -> list[ControlRecord]:
        """The extra control runs stored for a scenario digest, or under a scenario name (every setting)."""
        cur = self._select("controls", scenario=scenario, scenario_digest=digest)
        cols = [c[0] for c in cur.description]
        out = []
        for row in cur.fetchall():
            d = dict(zip(cols, row))
            d["result"] = json.loads(d["result"])
            out.append(ControlRecord(**d))
        return out

    def control_result(self, digest: str, defender: str, defender_version: str, seed: int,
                       member: int) -> dict[str, Any] | None:
        """The stored result of that extra control run, or None."""
        row = self._conn.execute(
            """SELECT result FROM controls WHERE scenario_digest=? AND defender=? AND defender_version=?
               AND seed=? AND member=?""", (digest, defender, defender_version, seed, member)).fetchone()
        return None if row is None else json.loads(row[0])

    def has_ok(self, digest: str, attacker: str, attacker_version: str, defender: str,
               defender_version: str, seed: int, rounds: int) -> bool:
        row = self._conn.execute(
            """SELECT 1 FROM matches WHERE scenario_digest=? AND attacker=? AND attacker_version=?
               AND defender=? AND defender_version=? AND seed=? AND rounds=? AND status='ok'""",
            (digest, attacker, attacker_version, defender, defender_version, seed, rounds),
        ).fetchone()
        return row is not None

    def scenario_names(self) -> list[str]:
        """The scenario names that stored matches were played under, sorted."""
        return [r[0] for r in self._conn.execute("SELECT DISTINCT scenario FROM matches ORDER BY scenario")]

    def latest_digest(self, scenario: str, status: str = "ok") -> str | None:
        """The digest of the most recently stored match of a scenario name: its current setting."""
        row = self._conn.execute(
            "SELECT scenario_digest FROM matches WHERE scenario=? AND status=? ORDER BY id DESC LIMIT 1",
            (scenario, status),
        ).fetchone()
        return None if row is None else str(row[0])

    def matches(self, scenario: str | None = None, digest: str | None = None,
                status: str | None = None) -> list[MatchRecord]:
        return self._records(self._select("matches", scenario=scenario, scenario_digest=digest, status=status))

    def _select(self, table: str, **equal: str | None) -> sqlite3.Cursor:
        """Every row of ``table`` whose columns equal the given values (a None or empty value: any), by id."""
        given = {col: v for col, v in equal.items() if v}
        where = "".join(f" AND {col}=?" for col in given)  # column names are this module's, never input
        return self._conn.execute(f"SELECT * FROM {table} WHERE 1=1{where} ORDER BY id", list(given.values()))

    @staticmethod
    def _records(cur: sqlite3.Cursor) -> list[MatchRecord]:
        cols = [c[0] for c in cur.description]
        out = []
        for row in cur.fetchall():
            d = dict(zip(cols, row))
            d["metrics"] = json.loads(d["metrics"] or "{}")
            d["round_records"] = json.loads(d["round_records"] or "[]")
            out.append(MatchRecord(**d))
        return out
