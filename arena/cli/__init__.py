"""The ``arena`` command line: the group (``arena.cli.group``) and its commands, one module per family
(``play``, ``published``, ``stored``, ``catalog``); ``arena.cli.common`` holds what they share."""

from arena.cli import catalog, play, published, stored  # noqa: F401 - importing a module registers its commands
from arena.cli.group import main

__all__ = ["catalog", "main", "play", "published", "stored"]
