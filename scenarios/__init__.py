"""The built-in scenario files (``*.toml``), installed as the package ``arena_scenarios``.

Nothing to import: ``arena.config.scenario.scenario_dirs`` finds this folder through
``importlib.resources`` so that a wheel install has the scenarios too.
"""
