"""The machine a figure was measured on, in words (every figure names it: machines differ), and
the memory and disk a job can still use."""

from __future__ import annotations

import os
import platform
import shutil
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


def available_memory() -> int | None:
    """Bytes of memory a new allocation can use now (Linux: MemAvailable, which counts
    reclaimable cache; elsewhere the free physical pages); None when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def free_disk(path: str | Path) -> int:
    """Free bytes on the file system that holds `path` (or would: its nearest existing
    ancestor)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free
