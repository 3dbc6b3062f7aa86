"""The ``arena`` command group; the command modules register on it."""

from __future__ import annotations

import click

from arena import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="arena")
def main() -> None:
    """Backdoor Arena: backdoor attacks and defenses play each other.

    Matches and trained models are kept in the arena home, whatever the
    current folder: $ARENA_HOME, else $XDG_DATA_HOME/backdoor-arena, else
    ~/.local/share/backdoor-arena.
    """
