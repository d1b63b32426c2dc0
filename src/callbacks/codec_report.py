"""The codec's test report: the tested model against classic codecs on the same test clips.

It keeps each test batch's originals, reconstructions and sources (the module's
`predict_step`), then runs the baselines (`src/evaluation/codec_baselines.py`) on the same
clips and writes the metrics table, the rate-distortion figure and listening WAVs
(`src/evaluation/codec_report.py`) into the run folder.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning_utilities.core.rank_zero import rank_zero_only
from rich.console import Console
from rich.table import Table

from src.errors import ConfigError
from src.evaluation.codec_baselines import MP3_KBPS, baselines
from src.evaluation.codec_report import System, compare_codecs, write_codec_report
from src.metrics import metric_key
from src.metrics.codec import stoi_available
from src.utils.media import log_media
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


class CodecReport(L.Callback):
    """Args:
    dirname: subfolder of the run folder (None: the run folder itself).
    max_records: compare on the first N test records (None: all tested).
    n_listen: records per source that get WAVs.
    stoi: measure STOI for every system (where pystoi is installed).
    mp3: include the MP3 baselines (where lameenc is installed).
    """

    def __init__(
        self,
        dirname: str | None = "codec",
        max_records: int | None = None,
        n_listen: int = 1,
        stoi: bool = True,
        mp3: bool = True,
    ) -> None:
        if max_records is not None and max_records < 1:
            raise ConfigError(f"codec_report.max_records must be >= 1 or null, got {max_records}")
        self.dirname = dirname
        self.max_records = max_records
        self.n_listen = int(n_listen)
        self.stoi = bool(stoi)
        self.mp3 = bool(mp3)
        self.kept: dict[str, list[torch.Tensor]] = {}
        self.systems: list[System] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.kept, self.systems = {}, []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self.max_records is not None and sum(map(len, self.kept.get("source", []))) >= (
            self.max_records
        ):
            return
        out = pl_module.predict_step(batch, batch_idx)
        for key in ("original", "decoded", "source"):
            self.kept.setdefault(key, []).append(out[key].detach().cpu())

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.kept:
            return
        if trainer.world_size > 1:
            log.warning("codec report: skipped under several processes (run eval on one)")
            return
        n = self.max_records
        original = torch.cat(self.kept["original"])[:n, 0]
        decoded = torch.cat(self.kept["decoded"])[:n, 0]
        sources = torch.cat(self.kept["source"])[:n]
        net, sr = pl_module.net, int(pl_module.hparams.sample_rate)
        # Entropy-coded with tables fitted on the training codes (none without a train split).
        coded = trainer.callback_metrics.get(metric_key("test", "coded_kbps"))
        model = {
            "name": "model",
            "kbps": net.bitrate_kbps,
            "coded_kbps": None if coded is None else float(coded),
        }
        stoi = self.stoi and stoi_available()
        if self.stoi and not stoi:
            log.warning("codec report: STOI skipped (pystoi is not installed)")
        kbps = MP3_KBPS if self.mp3 else None
        systems, renders = compare_codecs(
            original,
            decoded,
            sr,
            model,
            baselines(sr, mp3_kbps=kbps, at_kbps=[model["kbps"]]),
            stoi,
        )
        out = Path(trainer.default_root_dir)
        if self.dirname:
            out = out / self.dirname
        names = list(getattr(pl_module, "group_names", ["all"]))
        heldout = [names[g] for g in getattr(pl_module, "heldout", ())]
        files = write_codec_report(
            systems,
            renders,
            sources,
            names,
            heldout,
            sr,
            out,
            self.n_listen,
            meta={"weights": pl_module.param_counts},
        )
        self.systems = systems
        log.info(f"Wrote the codec report ({len(files)} files) to {out}")
        log_media(trainer, files, out, "codec")
        self._print(systems, sources, names, heldout)

    @staticmethod
    def _print(systems: list[System], sources, names, heldout) -> None:
        held = torch.tensor([names[int(s)] in heldout for s in sources], dtype=torch.bool)
        metrics = list(systems[0].values)
        table = Table(title="codec test metrics (in-distribution records)")
        for c in ("system", "kbps", *metrics):
            table.add_column(c, justify="left" if c == "system" else "right")
        for s in sorted(systems, key=lambda s: s.kbps):
            means = s.means(~held)
            table.add_row(s.name, f"{s.kbps:.1f}", *(f"{means[m]:.3g}" for m in metrics))
        Console().print(table)
