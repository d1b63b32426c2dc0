"""Evaluate a checkpoint on the test split: `python src/eval.py ckpt_path=... [data=...]`.

The checkpoint is read once: the task module is rebuilt from it (net config and heads are
stored in it), and the datamodule takes its normalisation statistics before setup, so none are
computed only to be replaced. The test metrics equal those at the end of training for the same
checkpoint and data; the eval callbacks add per-record reports (predictions CSV, confusion
matrices, scatter plots) to the run folder.
"""

from __future__ import annotations

import hydra
import lightning as L
from omegaconf import DictConfig

from src.data.provision import build_datamodule
from src.errors import DataError
from src.models.tasks import datamodule_state, module_from_checkpoint, read_checkpoint
from src.paths import CONFIG_DIR
from src.utils.instantiators import build_trainer
from src.utils.pylogger import RankedLogger
from src.utils.utils import extras, task_wrapper, user_errors

log = RankedLogger(__name__)


@task_wrapper
def evaluate(cfg: DictConfig) -> tuple[dict, dict]:
    """Test a checkpoint. Returns (metrics, objects)."""
    ckpt = read_checkpoint(cfg.ckpt_path)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg.data, cfg.paths.data_dir)
    model = module_from_checkpoint(ckpt)
    data_heads = [p.name for p in datamodule.heads]
    if data_heads != model.head_names:
        raise DataError(
            f"checkpoint {cfg.ckpt_path} predicts heads {model.head_names} but dataset "
            f"{datamodule.data_dir} labels {data_heads}"
        )
    datamodule.load_state_dict(datamodule_state(ckpt, datamodule))
    trainer = build_trainer(cfg)
    log.info(f"Testing {cfg.ckpt_path}")
    trainer.test(model=model, datamodule=datamodule)
    metrics = dict(trainer.callback_metrics)
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval.yaml")
def main(cfg: DictConfig) -> None:
    with user_errors():
        extras(cfg)
        evaluate(cfg)


if __name__ == "__main__":
    main()
