"""The GPU fast path (in-memory splits on the model's device, batches gathered there) and its
benchmark, exercised on the CPU: `data.on_device=true` takes the same code path on any device.
"""

from __future__ import annotations

import json

import pytest
import torch

from src.callbacks import speed
from src.data.datamodule import VIMHDataModule
from src.data.placement import split_device
from src.data.provision import build_datamodule
from src.errors import ConfigError
from src.paths import PROJECT_ROOT
from src.train import train
from src.utils.config import compose_config
from tests.helpers.runs import QUIET, on
from tests.helpers.vimh import make_vimh
from tests.test_scripts import load_script


def batches(dm, split, rank, epoch):
    loader = dm.loader(split, shuffle=split == "train", rank=rank, world_size=2)
    loader.sampler.set_epoch(epoch)
    return loader, [(x.clone(), y.clone()) for x, y in loader]


def test_device_gathered_batches_equal_host_gathered_ones(tmp_path):
    folder = make_vimh(tmp_path, n_train=50, n_val=11, n_test=13)
    dm = VIMHDataModule(folder, batch_size=8, in_memory=True)
    for split in ("train", "val"):
        for rank in (0, 1):
            dm.on_device = "auto"  # on a CPU: host memory
            host_loader, host = batches(dm, split, rank, epoch=3)
            dm.on_device = True
            dev_loader, dev = batches(dm, split, rank, epoch=3)
            assert not host_loader.on_device and dev_loader.on_device
            assert len(host) == len(dev) > 0
            for (a, b), (c, d) in zip(host, dev):
                assert torch.equal(a, c) and torch.equal(b, d)


def test_split_device_decides_where_splits_live(tmp_path):
    cpu = torch.device("cpu")
    assert split_device("auto", True, cpu, 10) is None  # only a CUDA device is worth it
    assert split_device(False, True, cpu, 10) is None
    assert split_device(True, True, cpu, 10) == cpu
    assert split_device("auto", False, cpu, 10) is None
    with pytest.raises(ConfigError, match="in-memory path"):
        split_device(True, False, cpu, 10)
    with pytest.raises(ConfigError, match=r"data\.on_device"):
        VIMHDataModule(tmp_path, on_device="yes")


def test_training_on_device_batches_matches_host_batches(compose_cfg, toy, one_thread):
    results = []
    for on_device in ("true", "false"):
        cfg = compose_cfg(
            "train",
            [
                *on(toy),
                "trainer.max_epochs=1",
                "test=false",
                "logger=none",
                "callbacks.lr_monitor=null",
                f"data.on_device={on_device}",
                *QUIET,
            ],
            out=f"run_{on_device}",
        )
        metrics, objects = train(cfg)
        assert objects["trainer"].train_dataloader.on_device == (on_device == "true")
        results.append({k: float(v) for k, v in metrics.items()})
    assert results[0] == results[1]


@pytest.fixture(scope="module")
def bench_data(tmp_path_factory):
    return tmp_path_factory.mktemp("bench_data")


class TickingClock:
    """`time` for a module under test: perf_counter advances one second per call, so a rate
    the benchmark computes is a count of what it timed, exactly."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 1.0
        return self.now

    def time(self) -> float:
        return self.now


def run_bench(monkeypatch, tmp_path, data_dir, *args):
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "scripts"))
    markdown = tmp_path / "performance.md"
    markdown.write_text("# Performance\n")
    out = tmp_path / "bench.json"
    argv = ["--tiny", "--data-dir", str(data_dir), "--json", str(out), "--markdown", str(markdown)]
    bench = load_script("bench_gpu")
    monkeypatch.setattr(bench, "time", TickingClock())
    monkeypatch.setattr(speed, "time", TickingClock())
    result = bench.main([*argv, *args])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    if not torch.cuda.is_available():  # GPU figures only in the GPU section
        assert markdown.read_text() == "# Performance\n"
    return result


def train_batches(data_dir, data: str) -> list[int]:
    """Sizes of one epoch's training batches of the tiny benchmark's dataset."""
    cfg = compose_config(
        "train", [f"data={data}", "data.recipe.dataset.size=256", f"paths.data_dir={data_dir}"]
    )
    dm = build_datamodule(cfg.data, cfg.paths.data_dir)
    dm.setup()
    return [len(y) for _, y in dm.loader("train", shuffle=True, batch_size=32)]


def test_bench_gpu_tiny_setting_on_cpu(monkeypatch, tmp_path, bench_data, one_thread):
    result = run_bench(monkeypatch, tmp_path, bench_data, "--models", "cnn_12k", "stft_cnn_77k")
    assert {(r["data"], r["placement"]) for r in result["loading"]} == {
        (d, p) for d in ("saw", "saw_audio") for p in ("device", "host, copied per step")
    }
    # One tick per timed epoch: loading counts every train record once per epoch, both ways.
    batches = {d: train_batches(bench_data, d) for d in ("saw", "saw_audio")}
    for r in result["loading"]:
        assert r["records_per_s"] == sum(batches[r["data"]]), r
    assert [r["model"] for r in result["end_to_end"]] == ["cnn_12k", "stft_cnn_77k"]
    for row in result["end_to_end"]:
        # TrainingSpeed skips 2 batches, then ticks once per batch: records per batch timed.
        sizes = batches[row["data"]][2:]
        assert set(row["records_per_s"]) == {"fp32", "fp32, host batches"}
        for rate in row["records_per_s"].values():
            assert rate == pytest.approx(sum(sizes) / len(sizes)), row
        stated = float(row["model"].split("_")[-1].rstrip("k")) * 1000  # the name's size
        assert abs(row["params"] - stated) <= 0.1 * stated, row


@pytest.mark.slow
def test_bench_gpu_tiny_covers_every_family(monkeypatch, tmp_path, bench_data, one_thread):
    result = run_bench(monkeypatch, tmp_path, bench_data)
    models = [r["model"] for r in result["end_to_end"]]
    assert models == ["cnn_12k", "vit_28k", "lstm_23k", "stft_cnn_77k"]
