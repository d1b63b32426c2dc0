"""Data parallel runs: each rank's share of a split, exact evaluation, rank-0 files.

Evaluation shards are unpadded, so a two-process test counts every record once and its metrics
and per-record predictions equal a single-process test of the same weights on the same data.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import pytest
import torch

from src.data.batching import EpochBatches
from src.data.datamodule import VIMHDataModule
from src.eval import evaluate
from src.train import train
from tests.helpers.runs import QUIET, on
from tests.helpers.vimh import make_vimh


class CountRecords(L.Callback):
    """Writes how many test records this rank evaluated, in how many batches (one file per
    rank, so spawned processes can report back)."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.records = self.batches = 0

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.records += len(batch[0])
        self.batches += 1

    def on_test_end(self, trainer, pl_module):
        path = Path(self.out) / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps({"records": self.records, "batches": self.batches}))


@pytest.mark.parametrize("n", [10, 11, 67])
def test_eval_shards_are_disjoint_and_cover_the_split(n):
    shards = [
        EpochBatches(n, 4, shuffle=False, rank=r, world_size=3, pad=False).indices()
        for r in range(3)
    ]
    assert torch.equal(torch.cat(shards), torch.arange(n))  # blocks in rank order, no repeat
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("in_memory", [True, False])
def test_datamodule_pads_train_only(tmp_path, in_memory):
    folder = make_vimh(tmp_path, n_train=21, n_val=9, n_test=7)
    dm = VIMHDataModule(folder, batch_size=4, in_memory=in_memory)
    for split, padded in (("train", True), ("val", False), ("test", False)):
        loaders = [dm.loader(split, shuffle=split == "train", rank=r, world_size=2) for r in (0, 1)]
        seen = [x for loader in loaders for x, _ in loader]
        n = dm.num_records(split)
        assert sum(map(len, seen)) == (n + n % 2 if padded else n), split
        if not padded:  # every record once, in order
            inputs = dm.tensors(split)[0]
            assert torch.equal(torch.cat(seen), inputs), split


def read_predictions(folder: Path) -> list[list[str]]:
    with open(folder / "predictions.csv", newline="") as f:
        return list(csv.reader(f))


@pytest.mark.slow
def test_ddp_sim_test_equals_single_process(compose_cfg, tmp_path, one_thread):
    """Two spawned CPU processes test the same checkpoint as one process: every record counted
    once although the ranks run unequal batch counts, identical per-record predictions and
    accuracies, and MAE/loss/score equal up to the order of float additions."""
    # 67 test records: ranks take 33 and 34, in 3 and 4 batches of 11.
    folder = make_vimh(tmp_path / "data", n_train=128, n_val=32, n_test=67)
    fit = compose_cfg(
        "train",
        [
            *on(folder),
            "trainer.max_epochs=2",
            "test=false",
            "logger=none",
            *QUIET,
            "callbacks.lr_monitor=null",
        ],
        out="fit",
    )
    _, objects = train(fit)
    ckpt = objects["trainer"].checkpoint_callback.best_model_path
    results = {}
    for trainer in ("cpu", "ddp_sim"):
        counts = tmp_path / f"counts_{trainer}"
        counts.mkdir()
        cfg = compose_cfg(
            "eval",
            [
                *on(folder),
                f"ckpt_path={ckpt}",
                f"trainer={trainer}",
                "+data.eval_batch_size=11",
                "logger=none",
                "callbacks.rich_progress_bar=null",
                "+callbacks.count._target_=tests.test_ddp.CountRecords",
                f"+callbacks.count.out={counts}",
            ],
            out=f"eval_{trainer}",
        )
        metrics, _ = evaluate(cfg)
        ranks = [json.loads(p.read_text()) for p in sorted(counts.glob("rank*.json"))]
        results[trainer] = (metrics, read_predictions(Path(cfg.paths.output_dir)), ranks)
    (single, single_rows, one), (ddp, ddp_rows, two) = results["cpu"], results["ddp_sim"]
    assert one == [{"records": 67, "batches": 7}]
    assert sorted(two, key=lambda r: r["records"]) == [
        {"records": 33, "batches": 3},
        {"records": 34, "batches": 4},
    ]
    assert set(single) == set(ddp)
    for key in single:
        if key.endswith("acc") or key.endswith("acc_mean"):  # ratios of counts: exact
            assert float(ddp[key]) == float(single[key]), key
        elif "score" in key or "skill" in key:  # 1 - MAE / MAE(train mean), near 0 after 2
            # epochs: its rounding is absolute (~1e-7), not relative; a record counted twice
            # moves it by ~1e-2
            assert float(ddp[key]) == pytest.approx(float(single[key]), rel=0, abs=1e-6), key
        else:  # float sums added in another order: equal to the last bits (a record counted
            # twice would move them by about 1/67 of a record's error)
            assert float(ddp[key]) == pytest.approx(float(single[key]), rel=1e-6, abs=0), key
    assert len(single_rows) == 1 + 67 and ddp_rows == single_rows
