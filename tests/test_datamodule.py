"""VIMHDataModule: splits, both loading paths, shuffling, sharding, normalisation, masking."""

import os
import stat
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch

from src.data.batching import EpochBatches, MemmapBatches
from src.data.datamodule import VIMHDataModule
from src.data.vimh import VIMHDataset, VIMHFormatError
from tests.helpers.vimh import make_vimh


def collect(loader, epoch=0):
    loader.sampler.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in loader]


def cat(batches):
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def as_rows(images):
    """Each record's pixels as bytes, to identify records across loaders."""
    return [bytes(r) for r in images.reshape(len(images), -1).numpy()]


@pytest.fixture(scope="module")
def nsmt(tmp_path_factory):
    """A dataset without a val file, so val is carved out of train."""
    return make_vimh(tmp_path_factory.mktemp("nsmt"), n_train=101, n_test=23, with_val=False)


def test_heads_and_shape_before_setup(tmp_path):
    folder = make_vimh(tmp_path, params=3, height=6, width=10, channels=2)
    good = (folder / "train").read_bytes()
    (folder / "train").write_bytes(b"broken")  # no pixel is read for heads and shape
    dm = VIMHDataModule(folder)
    assert dm.input_shape == (2, 6, 10)
    assert [h.name for h in dm.heads] == ["note_number", "note_velocity", "cutoff"]
    with pytest.raises(VIMHFormatError, match="train: size 6 bytes"):
        _ = dm.spec  # the train means need the label bytes
    (folder / "train").write_bytes(good)
    spec = VIMHDataModule(folder).spec  # the handoff to the model
    assert spec.input_kind == "image" and spec.input_shape == (2, 6, 10)
    assert spec.sample_rate == 8000 and spec.heads == dm.info.params
    codes = VIMHDataset(folder)["train"].codes
    for i, head in enumerate(spec.heads):  # the mean label over the training records
        assert spec.train_means[head.name] == pytest.approx(head.decode(codes[:, i]).mean())
    kwargs = spec.model_kwargs()
    assert kwargs["heads"][0] == {"name": "note_number", **dm.heads[0].mapping()}
    assert kwargs["input_shape"] == [2, 6, 10] and kwargs["sample_rate"] == 8000
    assert kwargs["train_means"] == spec.train_means


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        VIMHDataModule(tmp_path / "nowhere")
    folder = make_vimh(tmp_path, name="no-test-split")
    with pytest.raises(FileNotFoundError, match="store_audio"):
        VIMHDataModule(folder, representation="audio")
    (folder / "test").unlink()
    with pytest.raises(FileNotFoundError, match="test"):
        VIMHDataModule(folder).setup()


@pytest.mark.parametrize(
    ("workers", "group_bytes", "drop_last", "order"),
    [
        (0, 1, False, "uniform"),
        (0, 3000, True, "block"),
        (2, 2048, False, "block"),
        (2, MemmapBatches.GROUP_BYTES, True, "uniform"),
    ],
)
def test_fast_and_streaming_paths_give_equal_batches(
    nsmt, monkeypatch, workers, group_bytes, drop_last, order
):
    # small read groups, so that several groups and both workers take part
    monkeypatch.setattr(MemmapBatches, "GROUP_BYTES", group_bytes)
    kw = dict(batch_size=16, shuffle_seed=7, drop_last=drop_last, shuffle_order=order)
    fast = VIMHDataModule(nsmt, in_memory=True, **kw)
    slow = VIMHDataModule(nsmt, in_memory=False, num_workers=workers, **kw)
    loaders = [
        (fast.train_dataloader(), slow.train_dataloader()),
        (fast.val_dataloader(), slow.val_dataloader()),
        (fast.test_dataloader(), slow.test_dataloader()),
    ]
    for a, b in loaders:
        assert a.in_memory and not b.in_memory
        for epoch in (0, 1) if workers == 0 else (3, 4):
            batches_a, batches_b = collect(a, epoch), collect(b, epoch)
            assert len(batches_a) == len(batches_b) == len(a) == len(b)
            for (xa, ya), (xb, yb) in zip(batches_a, batches_b):
                assert xa.dtype == xb.dtype == torch.uint8 and ya.dtype == yb.dtype == torch.int64
                assert torch.equal(xa, xb) and torch.equal(ya, yb)
    n_train = fast.num_records("train")
    expect = n_train // 16 * 16 if drop_last else n_train
    assert sum(len(x) for x, _ in collect(slow.train_dataloader())) == expect


def test_epochs_reshuffle_train_only(nsmt):
    dm = VIMHDataModule(nsmt, batch_size=8, in_memory=True)
    train = dm.train_dataloader()
    e0, e0_again, e1 = cat(collect(train, 0)), cat(collect(train, 0)), cat(collect(train, 1))
    assert torch.equal(e0[0], e0_again[0])
    assert not torch.equal(e0[0], e1[0])
    assert sorted(as_rows(e0[0])) == sorted(as_rows(e1[0]))  # same records, new order
    assert len(e0[0]) == dm.num_records("train") == 101 - 10
    val = dm.val_dataloader()
    assert torch.equal(cat(collect(val, 0))[0], cat(collect(val, 5))[0])


def test_val_carved_from_train(nsmt):
    dm = VIMHDataModule(nsmt, batch_size=8, val_fraction=0.2, split_seed=3)
    dm.setup()
    ds = VIMHDataset(nsmt)
    n = len(ds["train"])
    assert dm.val_carved
    assert dm.num_records("val") == round(0.2 * n) and dm.num_records(
        "train"
    ) == n - dm.num_records("val")
    val_x, val_y = cat(collect(dm.val_dataloader()))
    train_x, _ = cat(collect(dm.train_dataloader()))
    # val is exactly the carved train records, in file order; disjoint from train
    rows = dm.rows["val"]
    assert torch.equal(val_x, torch.from_numpy(np.array(ds["train"].images[rows])))
    assert torch.equal(val_y, torch.from_numpy(ds["train"].codes[rows].astype(np.int64)))
    assert set(rows).isdisjoint(dm.rows["train"])
    assert sorted([*rows, *dm.rows["train"]]) == list(range(n))
    assert sorted(as_rows(train_x)) == sorted(
        as_rows(torch.from_numpy(np.array(ds["train"].images[dm.rows["train"]])))
    )
    # deterministic in split_seed
    same = VIMHDataModule(nsmt, val_fraction=0.2, split_seed=3)
    other = VIMHDataModule(nsmt, val_fraction=0.2, split_seed=4)
    same.setup()
    other.setup()
    assert np.array_equal(same.rows["val"], rows)
    assert not np.array_equal(other.rows["val"], rows)
    # test untouched: the whole test file, in order
    test_x, _ = cat(collect(dm.test_dataloader()))
    assert torch.equal(test_x, torch.from_numpy(np.array(ds["test"].images)))


def test_val_file_is_used_when_present(tmp_path):
    dm = VIMHDataModule(make_vimh(tmp_path, n_train=40, n_val=12, n_test=9))
    assert (dm.num_records("train"), dm.num_records("val"), dm.num_records("test")) == (40, 12, 9)
    assert not dm.val_carved


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_nsmt_style_without_val_loads(tmp_path, version):
    folder = make_vimh(tmp_path, n_train=30, n_test=10, with_val=False, version=version)
    for in_memory in (True, False):
        dm = VIMHDataModule(folder, batch_size=4, in_memory=in_memory)
        x, y = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
        assert x.shape == (4, 1, 8, 8) and x.dtype == torch.float32
        assert y.shape == (4, 2) and y.dtype == torch.int64
        assert dm.num_records("val") == 3 and dm.num_records("test") == 10


def test_normalisation_statistics(tmp_path):
    folder = make_vimh(tmp_path, n_train=50, channels=2, with_val=False)
    dm = VIMHDataModule(folder, batch_size=64)
    dm.setup()
    pixels = np.asarray(VIMHDataset(folder)["train"].images[dm.rows["train"]], dtype=np.float64)
    assert np.allclose(dm.mean.numpy(), pixels.mean(axis=(0, 2, 3)), atol=1e-4)
    assert np.allclose(dm.std.numpy(), pixels.std(axis=(0, 2, 3)), atol=1e-4)
    x, _ = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(2), atol=1e-4)
    # the statistics travel in the state dict and win over recomputed ones
    state = dm.state_dict()
    other = VIMHDataModule(folder, val_fraction=0.3)
    other.setup()
    other.load_state_dict(state)
    assert torch.equal(other.mean, dm.mean) and torch.equal(other.std, dm.std)
    # a seeded subsample for big datasets, repeatable
    sub = [VIMHDataModule(folder, stats_max_records=10) for _ in range(2)]
    for s in sub:
        s.setup()
    assert torch.equal(sub[0].mean, sub[1].mean) and not torch.equal(sub[0].mean, dm.mean)


def test_augmentation_only_in_training(nsmt):
    dm = VIMHDataModule(nsmt, batch_size=32, augment={"freq_mask": 4, "time_mask": 4, "n_masks": 2})
    batch = next(iter(dm.train_dataloader()))
    plain, _ = dm.on_after_batch_transfer(batch, 0)
    assert (plain == 0).sum() == 0  # normalised pixels never hit the mean exactly
    for training in (False, True):
        dm.trainer = SimpleNamespace(training=training, global_rank=0, world_size=1)
        x, _ = dm.on_after_batch_transfer(batch, 0)
        masked = x == 0
        if training:
            assert masked.any()
            assert torch.equal(x[~masked], plain[~masked])
            per_example = masked.flatten(1).sum(1)
            assert len(per_example.unique()) > 1  # masks drawn per example
        else:
            assert torch.equal(x, plain)
    dm.trainer = None
    assert VIMHDataModule(nsmt, augment={"freq_mask": 0, "time_mask": 0}).augment is None


def test_read_only_dataset(tmp_path):
    folder = make_vimh(tmp_path, n_train=20, n_test=5, with_val=False)
    files = list(folder.iterdir())
    for f in files:
        f.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        for in_memory in (True, False):
            dm = VIMHDataModule(folder, batch_size=8, in_memory=in_memory)
            n = sum(len(x) for x, _ in dm.train_dataloader())
            assert n == dm.num_records("train") == 18
            assert sum(len(x) for x, _ in dm.test_dataloader()) == 5
        assert not os.access(folder, os.W_OK) or os.geteuid() == 0
    finally:
        folder.chmod(stat.S_IRWXU)
        for f in files:
            f.chmod(stat.S_IRUSR | stat.S_IWUSR)


@pytest.mark.parametrize("n", [100, 101])
def test_sharding_across_two_ranks(tmp_path, n):
    folder = make_vimh(tmp_path, n_train=n, n_val=10, n_test=10)
    dm = VIMHDataModule(folder, batch_size=16, in_memory=True, shuffle_seed=5)
    shards = []
    for rank in (0, 1):
        loader = dm.loader("train", shuffle=True, rank=rank, world_size=2)
        loader.sampler.set_epoch(2)
        shards.append(loader.sampler.indices())
        assert len(loader) == len(dm.loader("train", shuffle=True, rank=0, world_size=2))
        assert len(cat(collect(loader, 2))[0]) == len(shards[-1])
    assert len(shards[0]) == len(shards[1]) == (n + 1) // 2
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(5 + 2))
    both = torch.cat(shards)
    assert set(both.tolist()) == set(range(n))  # covers the permutation
    assert len(both) - len(set(both.tolist())) == n % 2  # overlap only where padded
    assert torch.equal(torch.stack(shards, 1).flatten()[:n], perm)
    # with drop_last, equal shards and no overlap at all
    cut = [EpochBatches(n, 16, shuffle=True, drop_last=True, rank=r, world_size=2) for r in (0, 1)]
    a, b = (c.indices() for c in cut)
    assert len(a) == len(b) == n // 2 and not set(a.tolist()) & set(b.tolist())


def test_in_memory_auto_decides_by_size(tmp_path):
    folder = make_vimh(tmp_path)
    small = VIMHDataModule(folder, in_memory="auto", max_memory_gb=1.0)
    tiny = VIMHDataModule(folder, in_memory="auto", max_memory_gb=1e-9)
    small.setup()
    tiny.setup()
    assert small.use_memory and not tiny.use_memory
    small.setup()  # idempotent
    assert small.train_dataloader() is small.train_dataloader()


class _Probe(L.LightningModule):
    """Records what each training/validation step receives."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(64, 1)
        self.seen = {"train": [], "val": []}

    def training_step(self, batch, _):
        x, y = batch
        self.seen["train"].append((self.current_epoch, x.clone(), y.clone()))
        return self.layer(x.flatten(1)).mean()

    def validation_step(self, batch, _):
        self.seen["val"].append(batch[0].clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_with_lightning_trainer(nsmt):
    dm = VIMHDataModule(nsmt, batch_size=32, augment={"freq_mask": 3, "n_masks": 1})
    model = _Probe()
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    # Lightning set the epoch on the loader: each epoch's order is the seeded permutation
    _, codes = dm.tensors("train")
    for epoch in (0, 1):
        got = torch.cat([y for e, _, y in model.seen["train"] if e == epoch])
        perm = torch.randperm(len(codes), generator=torch.Generator().manual_seed(epoch))
        assert torch.equal(got, codes[perm])
    train_x = torch.cat([x for _, x, _ in model.seen["train"]])
    assert train_x.dtype == torch.float32 and (train_x == 0).any()  # masked
    val_x = torch.cat(model.seen["val"])
    assert not (val_x == 0).any()  # never augmented
    assert torch.equal(val_x, dm.normalize_images(dm.tensors("val")[0]).repeat(2, 1, 1, 1))
    ckpt = trainer._checkpoint_connector.dump_checkpoint()
    assert ckpt["VIMHDataModule"]["mean"] == dm.mean.tolist()
