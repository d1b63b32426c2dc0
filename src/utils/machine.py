"""The machine a figure was measured on, in words: every figure names it (machines differ)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def machine_line() -> str:
    """The machine a figure was measured on, in words."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    line = (
        f"{os.cpu_count()} CPU cores ({cpu}), {gpu}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, Python {platform.python_version()}"
    )
    try:  # other work on the machine slows every figure: say how busy it was
        load = os.getloadavg()[0]
    except OSError:
        return line
    return f"{line}; load average {load:.1f} (1 min) when recorded"
