"""Export a trained model for use outside this repository: `python src/export.py
ckpt_path=... [format=onnx|torchscript] [input=waveform|image]`.

Writes the model file and its JSON sidecar (`model.onnx` + `model.json`; a codec: `encoder.*`
and `decoder.*`) into the run folder, or into `out=<folder>`. The graph goes from a note's
samples (or its uint8 image) to every head's value, class and probability; the sidecar says
how to prepare the input and read the outputs (docs/deploy.md). The checkpoint is read as
eval reads it: untrusted data, nothing in it is resolved or built by Hydra
(`src/deploy/exporter.py`).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from src.deploy.exporter import export_checkpoint
from src.paths import CONFIG_DIR
from src.utils.pylogger import RankedLogger
from src.utils.utils import extras, task_wrapper, user_errors

log = RankedLogger(__name__)


@task_wrapper
def export(cfg: DictConfig) -> tuple[dict, dict]:
    """Export a checkpoint. Returns ({}, objects) with the files written."""
    out = cfg.get("out") or cfg.paths.output_dir
    files = export_checkpoint(cfg.ckpt_path, out, str(cfg.format), str(cfg.input))
    for path in files:
        log.info(f"Wrote {path}")
    return {}, {"cfg": cfg, "files": files}


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="export.yaml")
def main(cfg: DictConfig) -> None:
    with user_errors():
        extras(cfg)
        export(cfg)


if __name__ == "__main__":
    main()
