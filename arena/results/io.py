"""Published matches as files: gzip'd JSON lines with deterministic bytes, beside a leaderboard."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path

from arena.config.scenario import Scenario
from arena.core.errors import ArenaError
from arena.results.digests import upgrade_records
from arena.results.record import ControlRecord, MatchRecord


def write_jsonl_gz(records: list[MatchRecord], path: Path) -> Path:
    """The matches behind a leaderboard, one JSON object a line, gzip'd (deterministic bytes: no name, no mtime)."""
    lines = "".join(json.dumps(r.to_dict(), sort_keys=True, default=str) + "\n"
                    for r in sorted(records, key=lambda r: (r.attacker, r.defender, r.seed, r.id or 0)))
    return write_gz_text(lines, path)


def write_gz_text(text: str, path: Path) -> Path:
    """``text`` gzip'd into ``path`` with deterministic bytes (no file name, no mtime in the header)."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as f:
        f.write(text.encode())
    return path


def read_jsonl_gz(path: Path, known: Iterable[Scenario] = ()) -> list[MatchRecord]:
    """Matches from a published file: gzip'd JSON lines, or the plain JSON lines of `arena matches export`.

    A file written before the seed lists left the scenario digest gets its
    digests mapped to today's, for scenarios found by name or ``known``
    (``arena.results.digests``).
    """
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rt") if gzipped else open(path)) as f:
            records = [MatchRecord(**json.loads(line)) for line in f if line.strip()]
    except (OSError, json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
        raise ArenaError(f"{path}: not a file of published matches ({type(exc).__name__}: {exc})",
                         hint="pass a leaderboards/NAME.matches.jsonl.gz written by `arena leaderboard --write` "
                              "or a file written by `arena matches export`")
    return upgrade_records(records, known)


def write_controls_gz(controls: list[ControlRecord], path: Path) -> Path:
    """The extra control runs behind a leaderboard's usability verdicts (``arena controls``), as for matches."""
    lines = "".join(json.dumps(c.to_dict(), sort_keys=True, default=str) + "\n"
                    for c in sorted(controls, key=lambda c: (c.defender, c.seed, c.member)))
    return write_gz_text(lines, path)


def read_controls_gz(path: Path) -> list[ControlRecord]:
    """Extra control runs from a file written by ``write_controls_gz`` (NAME.controls.jsonl.gz)."""
    try:
        with gzip.open(path, "rt") as f:
            return [ControlRecord(**json.loads(line)) for line in f if line.strip()]
    except (OSError, json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
        raise ArenaError(f"{path}: not a file of control runs ({type(exc).__name__}: {exc})",
                         hint="pass a leaderboards/NAME.controls.jsonl.gz written by `arena leaderboard --write`")
