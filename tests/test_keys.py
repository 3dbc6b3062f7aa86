"""The referee's secret key (arena.core.keys) and the blinded questions (ServedDeployment)."""

from __future__ import annotations

import stat
from types import SimpleNamespace

import torch

from arena.core.keys import key_id, referee_key, secret_seed
from arena.engine.referee import ServedDeployment
from conftest import requires_fmnist, share_key


def test_the_key_is_made_once_private_and_kept(tmp_path):
    key = referee_key(tmp_path)
    assert len(key) == 32 and referee_key(tmp_path) == key
    assert stat.S_IMODE((tmp_path / "referee.key").stat().st_mode) == 0o600
    assert referee_key(tmp_path / "other") != key and len(key_id(key)) == 8


def test_seeds_depend_on_the_key_and_do_not_repeat_across_labels(tmp_path):
    a, b = referee_key(tmp_path / "a"), referee_key(tmp_path / "b")
    assert secret_seed(a, 4242, "defense", "strip", "match") != secret_seed(b, 4242, "defense", "strip", "match")
    seeds = {secret_seed(a, s, "defense", "strip", label) for s in range(50) for label in ("match", "control")}
    assert len(seeds) == 100 and all(0 <= x < 2**64 for x in seeds)


class RecordingHost:
    def __init__(self) -> None:
        self.calls: list[torch.Tensor] = []
        self.card = SimpleNamespace(name="recorder")

    def call(self, cmd, x, seconds):
        self.calls.append(x.clone())
        return torch.nn.functional.one_hot(x.flatten(1)[:, 0].long(), 3).float() if cmd == "predict" \
            else x.flatten(1)[:, 0].float()


def test_questions_come_in_fixed_size_calls_with_clean_and_stamped_mixed():
    host = RecordingHost()
    summary = SimpleNamespace(batch_aware=False, has_score=True)
    served = ServedDeployment(host, summary, 0.0, None, 3, torch.Generator().manual_seed(1), call_size=64)
    clean, stamped = torch.zeros(300, 1, 2, 2), torch.full((200, 1, 2, 2), 2.0)
    p = served.predict(torch.cat([clean, stamped]))
    assert all(len(c) == 64 for c in host.calls) and len(host.calls) == 8  # 500 inputs, padded to 512
    assert all(0 < int((c == 2).flatten(1)[:, 0].sum()) < 64 for c in host.calls)  # every call mixes both
    assert (p[:300].argmax(1) == 0).all() and (p[300:].argmax(1) == 2).all()  # answers back in order
    scores = served.score(torch.cat([clean, stamped]))
    assert torch.equal(scores, torch.cat([torch.zeros(300), torch.full((200,), 2.0)]))


@requires_fmnist
def test_benign_models_are_drawn_from_the_homes_key(tiny, tmp_path, monkeypatch, arena_home):
    """Anyone could train a benign model that is a function of the seed alone, and an inspector carrying
    its hash would reject every trojan that changes a weight with no analysis: the referee's own draws
    come from the home's key. The same key gives the same bytes (a seed moves between homes that share
    it, and tests stay reproducible); another key, another model."""
    from arena.config.micro import shrink
    from arena.engine.referee import Referee

    sc = shrink(tiny, train_limit=600, test_limit=100)

    def state(home) -> dict:
        monkeypatch.setenv("ARENA_HOME", str(home))
        model, _ = Referee(sc, device="cpu").benign(0)
        return {k: v.clone() for k, v in model.state_dict().items()}

    share_key(arena_home, tmp_path / "same-key")
    mine, twin, other = state(tmp_path / "same-key"), state(tmp_path / "copy"), state(tmp_path / "other-key")
    share_key(arena_home, tmp_path / "copy-again")
    again = state(tmp_path / "copy-again")
    assert all(torch.equal(mine[k], again[k]) for k in mine)
    assert not all(torch.equal(mine[k], other[k]) for k in mine)
    assert not all(torch.equal(twin[k], other[k]) for k in mine)  # two fresh keys differ too
