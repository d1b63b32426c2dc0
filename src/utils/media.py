"""Listening examples and figures in the loggers people watch, as well as in files.

The test reports (resynthesis, codec, sequence) write WAVs and PNGs into the run folder; this
logs the same files to each active TensorBoard logger (its audio and image panels:
`add_audio`, `add_image`) and W&B logger (`wandb.Audio`, `wandb.Image`). wandb is imported only
when a WandbLogger is active; with neither logger nothing is read back.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

KINDS = {".wav": "audio", ".png": "image"}


def media_loggers(trainer) -> list:
    """The trainer's loggers with audio and image panels."""
    return [lg for lg in trainer.loggers if isinstance(lg, (TensorBoardLogger, WandbLogger))]


def read_media(path: Path) -> tuple[str, object, int | None]:
    """("audio", mono float32 samples, rate) or ("image", (H, W, 3) float32 in [0, 1], None)."""
    if KINDS[path.suffix.lower()] == "audio":
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return "audio", audio.mean(axis=1), int(rate)
    import matplotlib.image

    image = np.asarray(matplotlib.image.imread(str(path)), dtype=np.float32)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.max() > 1.0:  # 8-bit values
        image = image / 255.0
    return "image", image[..., :3], None


def log_media(trainer, files: Iterable[Path], root: Path, prefix: str) -> int:
    """Log the WAVs and PNGs among `files` to the active media loggers, each tagged
    `<prefix>/<its path under root, no suffix>` at the trainer's global step; returns how many
    files were logged (0 without such a logger)."""
    loggers = media_loggers(trainer)
    chosen = [Path(f) for f in files if Path(f).suffix.lower() in KINDS]
    if not loggers or not chosen:
        return 0
    step = int(trainer.global_step)
    for path in chosen:
        kind, data, rate = read_media(path)
        tag = f"{prefix}/{path.relative_to(root).with_suffix('').as_posix()}"
        for lg in loggers:
            if isinstance(lg, TensorBoardLogger):
                if kind == "audio":
                    x = torch.from_numpy(np.clip(data, -1.0, 1.0))[None]
                    lg.experiment.add_audio(tag, x, global_step=step, sample_rate=rate)
                else:
                    lg.experiment.add_image(tag, data, global_step=step, dataformats="HWC")
            else:
                import wandb

                item = wandb.Audio(data, sample_rate=rate) if kind == "audio" else wandb.Image(data)
                lg.experiment.log({tag: item, "trainer/global_step": step})
    for lg in loggers:
        if isinstance(lg, TensorBoardLogger):
            lg.experiment.flush()
    log.info(f"Logged {len(chosen)} listening examples and figures under '{prefix}/'")
    return len(chosen)
