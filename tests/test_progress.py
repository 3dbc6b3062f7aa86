"""Counts and ETAs on stderr: the arithmetic, and that long steps report them."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from arena.engine.metrics import stream_scores
from arena.core.progress import Eta, clock
from arena.api.training import fit


def test_eta_is_the_time_left_at_the_rate_so_far():
    now = iter([100.0, 130.0, 160.0])
    eta = Eta(4, now=lambda: next(now))
    assert eta.status(1) == "1/4, 0:30, ETA 1:30"
    assert eta.status(4) == "4/4, 1:00"  # done: no ETA
    assert clock(3725) == "1:02:05" and clock(-3) == "0:00"


def test_training_epochs_report_a_count_and_an_eta():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    lines: list[str] = []
    fit(model, torch.rand(64, 1, 4, 4), torch.randint(0, 3, (64,)), epochs=3, batch_size=16, lr=0.1,
        progress=lines.append, label="benign")
    assert [line.split(":")[0].strip() for line in lines] == ["benign"] * 3
    assert "epoch 1/3" in lines[0] and "ETA" in lines[0] and "epoch 3/3" in lines[2] and "ETA" not in lines[2]


def test_windowed_filter_scoring_reports_how_far_it_is():
    dep = SimpleNamespace(score=lambda x: x.flatten(1).mean(1))
    lines: list[str] = []
    clean, trig = stream_scores(dep, torch.rand(90, 1, 2, 2), torch.rand(200, 1, 2, 2), batch_aware=True,
                                trigger_share=0.1, window=10, progress=lines.append)
    assert len(trig) == 200 and len(clean) == 200 * 9  # 200 windows of 1 trigger and 9 clean inputs
    assert len(lines) == 9 and "20/200" in lines[0] and "ETA" in lines[0]
