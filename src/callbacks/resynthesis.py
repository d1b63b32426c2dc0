"""Resynthesis report of a tested model: how its predictions sound against the true notes.

`python src/eval.py ckpt_path=... callbacks=eval_audio` adds this to the eval callbacks: it
keeps each test record's predicted values (natural units, every head's target mode decoded by
the module), then renders and measures them with baselines (`src/evaluation/resynthesis.py`)
and writes the report into the run folder (`src/evaluation/report.py`).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning_utilities.core.rank_zero import rank_zero_only

from src.errors import ConfigError, DataError
from src.evaluation.report import write_resynthesis_report
from src.evaluation.resynthesis import Resynthesis, evaluate_resynthesis
from src.evaluation.sound import refined_predictor
from src.generation.rebuild import DatasetRenderer, renderer_from_info
from src.metrics.baselines import datamodule_baseline_values
from src.utils.media import log_media
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


class ResynthesisReport(L.Callback):
    """Collect test predictions, then resynthesize and measure them (rank 0, single process).

    Args:
        dirname: subfolder of the run folder for the report (None: the run folder itself).
        max_records: evaluate the first N test records (None: all that were tested).
        n_listen: records that get WAVs and a figure.
        baselines: add the reference predictors (chance, train mean, 1-NN on pixels, ridge
            probe, oracle_class; src/metrics/baselines.py).
        refiner: a `src.matching.refine.Refiner` (set by `src/eval.py refine=true`): adds the
            model's estimates refined through the synth as the predictor `refined`.
    """

    def __init__(
        self,
        dirname: str | None = "resynthesis",
        max_records: int | None = None,
        n_listen: int = 4,
        baselines: bool = True,
        refiner=None,
    ) -> None:
        if max_records is not None and max_records < 1:
            raise ConfigError(f"resynthesis.max_records must be >= 1 or null, got {max_records}")
        self.dirname = dirname
        self.max_records = max_records
        self.n_listen = int(n_listen)
        self.baselines = bool(baselines)
        self.refiner = refiner  # a src.matching.refine.Refiner: adds the "refined" predictor
        self.renderer: DatasetRenderer | None = None
        self.pred: dict[str, list[torch.Tensor]] = {}
        self.true: dict[str, list[torch.Tensor]] = {}
        self.result: Resynthesis | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "test":
            return
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "info"):
            raise ConfigError("the resynthesis report needs a VIMHDataModule to test on")
        # Fail before testing when the dataset cannot be re-rendered.
        self.renderer = renderer_from_info(datamodule.info)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.pred, self.true, self.result = {}, {}, None

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        with torch.no_grad():
            out = pl_module.predict_step(batch, batch_idx)
        for name, v in out["pred"].items():
            self.pred.setdefault(name, []).append(v.detach().cpu().double())
        for name, v in out["true"].items():
            self.true.setdefault(name, []).append(v.detach().cpu().double())

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.pred:
            return
        if trainer.world_size > 1:
            log.warning("resynthesis report: skipped under several processes (run eval on one)")
            return
        datamodule = trainer.datamodule
        dataset = datamodule.dataset
        pred = {k: torch.cat(v).numpy() for k, v in self.pred.items()}
        true = {k: torch.cat(v).numpy() for k, v in self.true.items()}
        n = len(next(iter(pred.values())))
        if self.max_records is not None:
            n = min(n, self.max_records)
        split = datamodule.files["test"]
        expect = dataset[split].values()[:n]
        for i, spec in enumerate(dataset.params):
            if not np.allclose(true[spec.name][:n], expect[:, i], atol=1e-4 * spec.span):
                raise DataError(
                    f"resynthesis report: the tested records are not the first {n} of "
                    f"{datamodule.data_dir}/{split} in order"
                )
        predictors = {"model": {k: v[:n] for k, v in pred.items()}}
        if self.refiner is not None:
            refined, result = refined_predictor(
                dataset, split, predictors["model"], self.refiner, self.renderer
            )
            predictors["refined"] = refined
            log.info(
                f"Refined {n} test notes from the model's estimates: {result.renders_per_note:.0f} "
                f"renders and {1000 * result.seconds / n:.0f} ms per note"
            )
        if self.baselines:
            for name, values in datamodule_baseline_values(datamodule).items():
                predictors[name] = {k: v[:n] for k, v in values.items()}
        self.result = evaluate_resynthesis(
            dataset, predictors, split=split, n_listen=self.n_listen, renderer=self.renderer
        )
        out = Path(trainer.default_root_dir)
        if self.dirname:
            out = out / self.dirname
        meta = {"dataset": str(datamodule.data_dir)}
        files = write_resynthesis_report(self.result, self.renderer.imager, out, meta)
        log.info(f"Wrote the resynthesis report ({len(files)} files) to {out}")
        log_media(trainer, files, out, "resynthesis")
        summary = self.result.summary()
        for metric in ("mss", "lsd_db", "f0_err_cents"):
            log.info(
                f"resynthesis median {metric}: "
                + ", ".join(f"{name} {summary[name][metric]['median']:.4g}" for name in summary)
            )
