"""Listening examples and figures reach the active logger (src/utils/media.py): TensorBoard's
audio and image panels after `src/eval.py`, W&B's Audio and Image through a stand-in module."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from lightning.pytorch.loggers import WandbLogger

from src.audio.io import write_wav
from src.eval import evaluate
from src.utils.media import log_media
from tests.helpers.app import train_tiny_saw
from tests.helpers.runs import on


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    return train_tiny_saw(tmp_path_factory.mktemp("media"))


def test_eval_logs_the_resynthesis_examples_to_tensorboard(compose_cfg, tiny, one_thread):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder, ckpt = tiny
    cfg = compose_cfg(
        "eval",
        [
            *on(folder),
            f"ckpt_path={ckpt}",
            "callbacks=eval_audio",
            "callbacks.rich_progress_bar=null",
            "callbacks.resynthesis.max_records=8",
            "callbacks.resynthesis.n_listen=2",
            "callbacks.resynthesis.baselines=false",
            "logger=tensorboard",
        ],
    )
    evaluate(cfg)
    out = Path(cfg.paths.output_dir)
    (run,) = (out / "tensorboard").iterdir()  # version_0
    events = EventAccumulator(str(run), size_guidance={"audio": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    audio = {f"resynthesis/record_{i:03d}_{k}" for i in range(2) for k in ("target", "model")}
    assert audio <= set(tags["audio"]), tags["audio"]
    assert {"resynthesis/record_000", "resynthesis/record_001"} <= set(tags["images"])
    assert "resynthesis/resynthesis_metrics" in tags["images"]
    clip = events.Audio("resynthesis/record_000_model")[0]
    assert clip.sample_rate == 8000 and clip.length_frames == 8000
    picture = events.Images("resynthesis/record_000")[0]
    assert (picture.width, picture.height) == (1000, 560)  # the figure's PNG, as written
    assert "wandb" not in sys.modules  # imported only when a W&B logger is active


class Run:
    def __init__(self) -> None:
        self.logged: list[dict] = []

    def log(self, data: dict) -> None:
        self.logged.append(data)


class StandInWandb(WandbLogger):
    """A WandbLogger that needs no wandb: its run records what it is given."""

    def __init__(self) -> None:  # no wandb.init
        self.run = Run()

    @property
    def experiment(self) -> Run:
        return self.run


def test_wandb_gets_audio_and_images(tmp_path, monkeypatch):
    made = []

    class Media:
        def __init__(self, data, sample_rate=None) -> None:
            made.append(self)
            self.data, self.sample_rate = data, sample_rate

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Audio=Media, Image=Media))
    tone = 0.5 * np.sin(np.arange(4000) / 5.0)
    write_wav(tmp_path / "ex" / "a.wav", tone, 16000)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 1))
    fig.savefig(tmp_path / "ex" / "b.png", dpi=50)
    plt.close(fig)
    (tmp_path / "ex" / "c.csv").write_text("not media\n")
    logger = StandInWandb()
    trainer = types.SimpleNamespace(loggers=[logger], global_step=7)
    files = sorted((tmp_path / "ex").iterdir())
    assert log_media(trainer, files, tmp_path, "report") == 2
    assert [sorted(d) for d in logger.run.logged] == [
        ["report/ex/a", "trainer/global_step"],
        ["report/ex/b", "trainer/global_step"],
    ]
    audio, image = logger.run.logged[0]["report/ex/a"], logger.run.logged[1]["report/ex/b"]
    assert audio.sample_rate == 16000 and np.abs(audio.data - tone).max() < 1e-3
    assert image.data.shape == (50, 100, 3) and 0.0 <= image.data.min() <= image.data.max() <= 1
    assert logger.run.logged[0]["trainer/global_step"] == 7
    assert log_media(types.SimpleNamespace(loggers=[], global_step=0), files, tmp_path, "r") == 0
