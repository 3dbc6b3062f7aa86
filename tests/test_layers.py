"""The package's layers hold: no import climbs a layer, no modules import each other in a cycle,
and agents import the one API package (``arena.api``) only."""

from __future__ import annotations

import ast
import shutil
import warnings
from pathlib import Path

import arena
from arena.layers import LAYERS, check

ROOT = Path(arena.__file__).parent
AGENTS = Path(__file__).resolve().parents[1] / "agents"


def test_no_import_climbs_a_layer_and_no_cycles():
    assert check(ROOT) == []


def test_every_module_sits_in_a_layer():
    top = {p.stem for p in ROOT.glob("*.py")} | {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    named = {layer.split(".")[1] for layer in LAYERS}
    # Besides the layers: the package marker, the old-path shim and the checker itself.
    assert top - named == {"__init__", "_moved", "layers"}


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "arena"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_a_climbing_import_is_caught_even_inside_a_function(tmp_path):
    root = _copy(tmp_path)
    views = root / "api" / "views.py"
    views.write_text(views.read_text() + "\n\ndef sneak():\n    from arena.engine.referee import Referee\n")
    (found,) = [v for v in check(root) if "sits above" in v.why]  # (it also closes a cycle via the referee)
    assert found.module == "arena.api.views" and found.imported == "arena.engine.referee"
    assert "arena.engine sits above arena.api" in str(found)


def test_a_cycle_inside_one_layer_is_caught(tmp_path):
    root = _copy(tmp_path)
    (root / "config" / "dataset_info.py").write_text(
        (root / "config" / "dataset_info.py").read_text() + "\n\ndef late():\n    import arena.config.scenario\n")
    found = check(root)
    assert [v.why for v in found if "cycle" in v.why] == [
        "closes the cycle arena.config.dataset_info -> arena.config.scenario -> arena.config.dataset_info"]


def test_type_checking_imports_do_not_count(tmp_path):
    root = _copy(tmp_path)
    p = root / "core" / "errors.py"
    p.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from arena.cli import main\n"
                 + p.read_text())
    assert check(root) == []


def test_agents_import_only_the_api_package():
    for path in sorted(AGENTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("arena."):
                assert node.module == "arena.api", f"{path.name}:{node.lineno} imports {node.module}"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("arena.") for a in node.names), f"{path.name}:{node.lineno}"


def test_old_module_paths_still_import_the_same_module_with_a_warning():
    import arena.api.protocol

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from arena.protocol import Attacker  # noqa: F401 - the pre-0.2 path of a plugin
        import arena.referee
    assert Attacker is arena.api.protocol.Attacker
    import arena.engine.referee

    assert arena.referee is arena.engine.referee
    assert any(issubclass(w.category, DeprecationWarning) and "arena.api.protocol" in str(w.message)
               for w in caught)
