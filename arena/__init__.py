"""Backdoor Arena: neural backdoor attacks and defenses play each other.

The package is laid out by layer, lowest first (``arena.layers`` states the
order and a test holds every import to it): ``core`` (errors, the arena home,
the cache), ``config`` (scenarios, datasets), ``api`` (the one surface agents
import), ``plugins``, ``results`` (the store, ratings, leaderboards), ``engine``
(agent hosts, the referee, metrics, the outcome rule), ``run`` (tournaments and
their backends), ``present`` (text, charts, the report) and ``cli``.
"""

from arena import _moved

__version__ = "0.2.0"

_moved.install()  # the pre-0.2 module paths (arena.protocol, ...) for one more release
