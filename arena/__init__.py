"""Backdoor Arena: neural backdoor attacks and defenses play each other.

The referee (``arena.referee``) plays an attacker against a defender in a
scenario (``arena.scenario``) and scores the match with the TrojanZoo
metrics (``arena.metrics``); tournaments, ratings and leaderboards build on
the match records kept in ``arena.store``.
"""

__version__ = "0.1.0"
