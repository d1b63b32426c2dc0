"""Evaluate a checkpoint on the test split: `python src/eval.py ckpt_path=... [data=...]`.

The model is rebuilt from the checkpoint alone (net config and heads are stored in it). Besides
the test metrics (identical to those at the end of training for the same checkpoint and data),
the run folder gets per-sample predictions (CSV, natural units), a confusion matrix per head
and a true-vs-predicted scatter per head (PNG).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import hydra  # noqa: E402
import lightning as L  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from src.models.multihead_module import MultiheadModule  # noqa: E402
from src.utils.instantiators import instantiate_callbacks, instantiate_loggers  # noqa: E402
from src.utils.predictions import collect_predictions, write_prediction_reports  # noqa: E402
from src.utils.pylogger import RankedLogger  # noqa: E402
from src.utils.utils import build_datamodule, extras, task_wrapper  # noqa: E402

log = RankedLogger(__name__)


@task_wrapper
def evaluate(cfg: DictConfig) -> tuple[dict, dict]:
    """Test a checkpoint and write prediction reports. Returns (metrics, objects)."""
    ckpt = Path(cfg.ckpt_path)
    if not ckpt.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt}: no such checkpoint file")
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg.data)
    model = MultiheadModule.load_checkpoint(str(ckpt))
    data_heads = [p.name for p in datamodule.heads]
    if data_heads != model.head_names:
        raise ValueError(
            f"checkpoint {ckpt} predicts heads {model.head_names} but dataset "
            f"{cfg.data.data_dir} labels {data_heads}"
        )
    tcfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    tcfg.pop("compile", None)
    tcfg.pop("matmul_precision", None)
    trainer = instantiate(
        tcfg,
        callbacks=instantiate_callbacks(cfg.get("callbacks")),
        logger=instantiate_loggers(cfg.get("logger")) or False,
    )
    log.info(f"Testing {ckpt}")
    # The full checkpoint (datamodule state: normalisation statistics) is restored, weights-only.
    trainer.test(model=model, datamodule=datamodule, ckpt_path=str(ckpt), weights_only=True)
    metrics = dict(trainer.callback_metrics)
    if cfg.get("predictions", True) and trainer.is_global_zero:
        table = collect_predictions(trainer, model, datamodule)
        files = write_prediction_reports(table, model.specs, Path(cfg.paths.output_dir))
        log.info("Wrote " + ", ".join(str(f.name) for f in files))
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}


@hydra.main(version_base="1.3", config_path=str(ROOT / "configs"), config_name="eval.yaml")
def main(cfg: DictConfig) -> None:
    extras(cfg)
    evaluate(cfg)


if __name__ == "__main__":
    main()
