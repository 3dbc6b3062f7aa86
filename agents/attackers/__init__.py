"""Attacker agents: one file per attack, registered under the ``arena.attackers`` entry points."""
