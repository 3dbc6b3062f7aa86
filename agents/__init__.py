"""Built-in agents, installed under the import name ``arena_agents``.

The folder is called ``agents/`` but is never imported as ``agents``: that
top-level name belongs to the OpenAI Agents SDK, and a package of ours under
it would shadow theirs (or be shadowed) wherever both are installed.
pyproject.toml maps ``arena_agents`` to this folder.

What every built-in agent assumes of the data: any number of classes (2 or
more) and any square image size the arena loads (8 pixels or more); each is
played on 3 to 12 classes and 10 to 32 pixels in the tests
(``tests/test_own_data.py``). What each needs of the model, its "Assumes:"
line says: outputs and gradients only (any architecture), or named layers of
the model contract (``arena.api.models``; torchvision architectures and any
that ``torch.fx`` can split have them, ``arena.api.generic``; on one that
cannot be split such an agent fails with that reason).
"""
