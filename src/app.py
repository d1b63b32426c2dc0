"""A local page to hear and see what a checkpoint does: `python src/app.py [ckpt_path=...]`.

Estimation checkpoints: upload or record a sound, or pick a test record; the page shows the
input's spectral image, the predicted parameters with units and confidence, and plays the
resynthesis (and the refined one) beside the input. Codec checkpoints: original against
decoded, with the bitrate. Sequence checkpoints: a phrase, its one-step predictions and a
rollout. Without `ckpt_path` the newest checkpoint under `logs/` is loaded; the page's picker
offers every run's. The server listens on 127.0.0.1 unless `host` says otherwise. Files the
page makes go to the run folder (`page/`).
"""

from __future__ import annotations

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

from src.demo.core import Session, find_checkpoints
from src.errors import ConfigError, DataError
from src.paths import CONFIG_DIR
from src.utils.pylogger import RankedLogger
from src.utils.utils import extras, task_wrapper, user_errors

log = RankedLogger(__name__)


@task_wrapper
def serve(cfg: DictConfig) -> tuple[dict, dict]:
    """Load the checkpoint, build the page and (with `launch`) serve it until interrupted."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local page calls no one
    try:
        from src.demo.page import build_page
    except ImportError as e:
        raise ConfigError(f"the page needs the app extra: pip install -e '.[app]' ({e})") from e
    found = [str(p) for p in find_checkpoints(cfg.paths.log_dir)]
    ckpt = cfg.ckpt_path or (found[0] if found else None)
    if ckpt is None:
        raise ConfigError(
            f"no checkpoint under {cfg.paths.log_dir}: train one (make train) or pass "
            f"ckpt_path=<checkpoint>"
        )
    work = Path(cfg.paths.output_dir) / "page"
    session = Session(cfg, work)
    message = session.load(ckpt)
    if session.demo is None and cfg.ckpt_path:  # the one asked for: as eval and predict do
        raise DataError(message.removeprefix("error: "))
    if session.demo is None:  # the newest found: the page says why, its picker offers others
        log.warning(f"{message}; pick another checkpoint on the page")
    else:
        log.info(message)
    page = build_page(session, list(dict.fromkeys([str(ckpt), *found])), message)
    if cfg.launch:
        work.mkdir(parents=True, exist_ok=True)
        page.queue().launch(
            server_name=str(cfg.host),
            server_port=None if cfg.port is None else int(cfg.port),
            allowed_paths=[str(work)],
            share=False,
            inbrowser=False,
        )
    return {}, {"cfg": cfg, "session": session, "page": page}


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="app.yaml")
def main(cfg: DictConfig) -> None:
    with user_errors():
        extras(cfg)
        serve(cfg)


if __name__ == "__main__":
    main()
