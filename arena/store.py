"""The match store: one SQLite database (WAL) under the arena home.

A match row is written once, when the match ends (successfully or with an
error), inside one transaction: a killed tournament loses at most the match
in flight and never leaves a partial row. The natural key (scenario digest,
agents and versions, seed, rounds) is unique, so a resumed tournament skips
what is stored and a re-run of a failed match replaces its error row.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arena.cache import arena_home

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
CREATE TABLE IF NOT EXISTS sweeps (        -- efficacy-specificity curves (arena.sweep)
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
"""


@dataclass
class MatchRecord:
    scenario: str
    scenario_digest: str
    attacker: str
    attacker_version: str
    defender: str
    defender_version: str
    seed: int
    rounds: int
    status: str
    outcome: float | None = None
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    round_records: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    device: str = ""
    code_version: str = ""
    started_at: str = ""
    duration_s: float = 0.0
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


class Store:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or arena_home() / "arena.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=60)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def save(self, r: MatchRecord) -> int:
        with self._conn:  # one transaction
            cur = self._conn.execute(
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
            return int(cur.lastrowid)

    def save_sweep(self, result: Any) -> None:
        """Store an ``arena.sweep.SweepResult`` (replacing the same sweep run before)."""
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

    def has_ok(self, digest: str, attacker: str, attacker_version: str, defender: str,
               defender_version: str, seed: int, rounds: int) -> bool:
        row = self._conn.execute(
            """SELECT 1 FROM matches WHERE scenario_digest=? AND attacker=? AND attacker_version=?
               AND defender=? AND defender_version=? AND seed=? AND rounds=? AND status='ok'""",
            (digest, attacker, attacker_version, defender, defender_version, seed, rounds),
        ).fetchone()
        return row is not None

    def matches(self, scenario: str | None = None, digest: str | None = None,
                status: str | None = None) -> list[MatchRecord]:
        q, args = "SELECT * FROM matches WHERE 1=1", []
        if scenario:
            q += " AND scenario=?"
            args.append(scenario)
        if digest:
            q += " AND scenario_digest=?"
            args.append(digest)
        if status:
            q += " AND status=?"
            args.append(status)
        q += " ORDER BY id"
        cur = self._conn.execute(q, args)
        cols = [c[0] for c in cur.description]
        out = []
        for row in cur.fetchall():
            d = dict(zip(cols, row))
            d["metrics"] = json.loads(d["metrics"] or "{}")
            d["round_records"] = json.loads(d["round_records"] or "[]")
            out.append(MatchRecord(**d))
        return out
