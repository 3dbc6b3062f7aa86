"""`arena agents check --smoke`: agents broken the ways authors break them fail by name, with the reason.

One CLI call checks every agent here, so the micro scenario's benign model and
badnet trojan are made once for all of them.
"""

from __future__ import annotations

import pytest

import textwrap
from pathlib import Path

from click.testing import CliRunner

from arena.cli import main
from conftest import requires_fmnist

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)

PLUGINS = {
    "wide_scores.py": """
        import torch
        from arena.api.defenses import InputFilter

        class WideScores(InputFilter):
            # Two columns per input where one score per input is expected.
            name = "wide-scores"

            def fit(self, model, reference, ctx):
                return None

            def score_inputs(self, model, state, x, generator):
                return torch.rand(len(x), 2, generator=generator)
    """,
    "nan_scores.py": """
        import torch
        from arena.api.defenses import InputFilter

        class NanScores(InputFilter):
            name = "nan-scores"

            def fit(self, model, reference, ctx):
                return None

            def score_inputs(self, model, state, x, generator):
                return torch.full((len(x),), float("nan"))
    """,
    "boom.py": """
        from arena.api.protocol import Attacker

        class Boom(Attacker):
            name = "boom"

            def craft(self, ctx):
                raise ValueError("boom")
    """,
}


@requires_fmnist
def test_smoke_fails_broken_agents_by_name_and_passes_a_correct_one(tmp_path: Path) -> None:
    specs = []
    for file, body in PLUGINS.items():
        (tmp_path / file).write_text(textwrap.dedent(body))
        cls = {"wide_scores.py": "WideScores", "nan_scores.py": "NanScores", "boom.py": "Boom"}[file]
        specs.append(f"{tmp_path / file}:{cls}")
    wide, nan, boom = specs

    r = CliRunner().invoke(main, ["agents", "check", "--smoke", *specs, "none"], catch_exceptions=False)
    out = r.stdout
    assert r.exit_code == 1, (r.exit_code, out, r.stderr)
    lines = out.splitlines()
    smoke = lines[lines.index("smoke matches (micro Fashion-MNIST scenario, CPU):") + 1:]

    def line(role: str, spec: str) -> str:
        (hit,) = [ln for ln in smoke if ln.split()[1:3] == [role, spec] or ln.split()[1:3] == [role, spec + ":"]]
        return hit

    def failure(role: str, spec: str) -> str:
        head = f"FAIL  {role} {spec}: "
        assert line(role, spec).startswith(head), smoke
        return line(role, spec)[len(head):]

    assert failure("defender", wide).startswith("returned garbage: filter scores of shape ("), smoke
    assert ", 2) for " in failure("defender", wide), smoke
    # Caught at the threshold it calibrates from its scores, or at the scores themselves.
    assert "finite" in failure("defender", nan) and "nan" in failure("defender", nan).lower(), smoke
    assert "ValueError: boom" in failure("attacker", boom), smoke
    # 'none' is both an attacker and a defender: each side plays its smoke match and passes.
    assert line("attacker", "none").startswith("ok    attacker none (outcome "), smoke
    assert line("defender", "none").startswith("ok    defender none (outcome "), smoke
    assert "Traceback" not in out + r.stderr
