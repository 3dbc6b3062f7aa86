"""What a match's numbers depend on beyond its settings (torch, Python, threads, processor, device)."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from arena.api.training import match_threads


def environment(device: torch.device | str) -> dict[str, Any]:
    """What a match's numbers depend on beyond its settings: stored with every match."""
    return {
        "torch": torch.__version__, "python": platform.python_version(), "threads": match_threads(),
        "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "device": str(device),
        "cuda": torch.version.cuda if str(device).startswith("cuda") else None,
    }
