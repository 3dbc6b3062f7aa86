"""Defender agents: one file per defense, registered under the ``arena.defenders`` entry points."""
