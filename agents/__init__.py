"""Built-in agents, installed under the import name ``arena_agents``.

The folder is called ``agents/`` but is never imported as ``agents``: that
top-level name belongs to the OpenAI Agents SDK, and a package of ours under
it would shadow theirs (or be shadowed) wherever both are installed.
pyproject.toml maps ``arena_agents`` to this folder.
"""
