"""Where in-memory splits live: host memory, or the accelerator itself (the GPU fast path).

On a GPU, indexing a batch out of a tensor that already lives there costs microseconds, while
gathering it on the host and copying it over costs a host gather, a copy and a synchronisation
per step; small datasets therefore go to the device once and stay there.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from src.errors import ConfigError
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

# "auto" moves the splits only when they take at most this share of the free device memory.
MAX_SHARE = 0.5


def split_device(
    on_device: bool | str, in_memory: bool, root: torch.device, nbytes: int
) -> torch.device | None:
    """The device to keep the in-memory splits on, or None for host memory.

    `on_device`: True puts them on `root` (the model's device, whatever it is); False never;
    "auto" on a CUDA `root` when `nbytes` fit in `MAX_SHARE` of its free memory.
    """
    if on_device is True and not in_memory:
        raise ConfigError("data.on_device=true needs the in-memory path (data.in_memory)")
    if on_device is False or not in_memory:
        return None
    if on_device is True:
        return root
    if root.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(root)
    if nbytes > MAX_SHARE * free:
        log.info(
            f"splits of {nbytes / 2**30:.2f} GiB exceed {MAX_SHARE:.0%} of the free memory of "
            f"{root}; batches are gathered on the host"
        )
        return None
    return root


def placement(trainer) -> tuple[int, int, torch.device]:
    """(global rank, world size, model device) of the running trainer; (0, 1, cpu) without one
    (or the initialised process group's rank and size)."""
    strategy = getattr(trainer, "strategy", None)
    device = strategy.root_device if strategy is not None else torch.device("cpu")
    if trainer is not None and hasattr(trainer, "world_size"):
        return int(trainer.global_rank), int(trainer.world_size), device
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), device
    return 0, 1, device
