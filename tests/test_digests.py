"""Scenario digests leave the seed lists out, and what was stored under the old digests is found again."""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

from arena.config.scenario import load_scenario, scenario_from_dict
from arena.results.io import read_jsonl_gz, write_jsonl_gz
from arena.results.record import MatchRecord
from arena.results.store import STORE_VERSION, Store

ROOT = Path(__file__).resolve().parent.parent


def _rec(scenario: str, digest: str, seed: int, attacker: str = "badnet") -> MatchRecord:
    return MatchRecord(scenario=scenario, scenario_digest=digest, attacker=attacker, attacker_version="1",
                       defender="none", defender_version="1", seed=seed, rounds=1, status="ok", outcome=1.0)


def test_adding_seeds_keeps_the_digest_and_knows_the_old_ones():
    five = scenario_from_dict({"name": "x", "seeds": [10, 11, 12, 13, 14]})
    twenty = scenario_from_dict({"name": "x", "seeds": list(range(10, 30))})
    assert five.digest == twenty.digest
    # The digest a store written before 2026-12-06 holds for the five seeds is among the twenty's legacy ones.
    assert five.legacy_digests[-1] in twenty.legacy_digests
    assert five.digest not in five.legacy_digests
    assert scenario_from_dict({"name": "x", "seeds": [11, 12]}).legacy_digests[-1] not in twenty.legacy_digests


def _legacy_store(path: Path, rows: list[MatchRecord]) -> None:
    """A store as an arena before store version 1 left it: the rows as they were written, user_version 0."""
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.executemany("INSERT INTO matches (scenario, scenario_digest, attacker, attacker_version, defender, "
                     "defender_version, seed, rounds, status, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     [(r.scenario, r.scenario_digest, r.attacker, r.attacker_version, r.defender,
                       r.defender_version, r.seed, r.rounds, r.status, r.outcome) for r in rows])
    conn.execute("PRAGMA user_version=0")
    conn.commit()
    conn.close()


def test_an_older_store_is_rekeyed_once_when_opened_for_writing(tmp_path):
    fm = load_scenario("fmnist-cnn")
    old = fm.legacy_digests[2]  # the digest of fmnist-cnn when its seeds were the first three of today's
    path = tmp_path / "arena.db"
    _legacy_store(path, [_rec("fmnist-cnn", old, fm.seeds[0]), _rec("fmnist-cnn", old, fm.seeds[1]),
                         _rec("nowhere", "0123456789abcdef", 0)])
    before = Store(path, readonly=True)
    assert {r.scenario_digest for r in before.matches("fmnist-cnn")} == {old}  # a reader changes nothing
    before.close()
    store = Store(path)
    assert [r.scenario_digest for r in store.matches("fmnist-cnn")] == [fm.digest, fm.digest]
    assert store.has_ok(fm.digest, "badnet", "1", "none", "1", fm.seeds[1], 1)  # a tournament skips it
    # A scenario that cannot be loaded keeps what it carries.
    assert [r.scenario_digest for r in store.matches("nowhere")] == ["0123456789abcdef"]
    assert store._conn.execute("PRAGMA user_version").fetchone()[0] == STORE_VERSION
    store.close()


def test_a_match_file_with_old_digests_reads_as_today(tmp_path):
    variant = load_scenario(str(ROOT / "benchmarks" / "scenarios" / "fmnist-cnn-alpha08.toml"))
    fm = load_scenario("fmnist-cnn")
    f = write_jsonl_gz([_rec("fmnist-cnn", fm.legacy_digests[-1], 10),
                        _rec(variant.name, variant.legacy_digests[-1], 10)], tmp_path / "old.matches.jsonl.gz")
    got = {r.scenario: r.scenario_digest for r in read_jsonl_gz(f, known=[variant])}
    assert got == {"fmnist-cnn": fm.digest, variant.name: variant.digest}
    # A variant known only by path is not found by its name: its digest is left as it was.
    assert {r.scenario_digest for r in read_jsonl_gz(f) if r.scenario == variant.name} == \
        {variant.legacy_digests[-1]}


def test_shipped_match_files_carry_todays_digests():
    scenarios = {sc.name: sc for sc in [load_scenario(n) for n in ("fmnist-cnn", "cifar10-cnn")] +
                 [load_scenario(str(p)) for p in (ROOT / "benchmarks" / "scenarios").glob("*.toml")]}
    for f in (ROOT / "leaderboards").glob("*.matches.jsonl.gz"):
        with gzip.open(f, "rt") as lines:  # the bytes as shipped, not mapped on reading
            digests = {(d["scenario"], d["scenario_digest"]) for d in map(json.loads, lines)}
        assert digests == {(name, scenarios[name].digest) for name, _ in digests}, f.name
