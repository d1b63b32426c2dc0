"""SpectrogramViT: patch grids for any input, position embeddings, SDPA attention, configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from src.data.vimh import VIMHDataset
from src.models.components.vit import SpectrogramViT, grid_size, sincos_2d
from tests.helpers.models import MODEL_DIR, assert_size_ladder, check_config_size, train_toy
from tests.helpers.runs import QUIET, assert_beats_chance, assert_complete_metrics
from tests.helpers.vimh import make_vimh

VIT_CONFIGS = sorted(MODEL_DIR.glob("vit_*.yaml"))
SMALL = {"embed_dim": 16, "depth": 1, "num_heads": 2}
pytestmark = pytest.mark.usefixtures("one_thread")


# --- the module ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "grid"),
    [
        ((1, 32, 32), (7, 7)),  # (32 - 8) / 4 + 1
        ((3, 64, 16), (15, 3)),
        ((2, 16, 48), (3, 11)),
        ((1, 10, 30), (2, 7)),  # padded so the last patch fits
        ((1, 4, 4), (1, 1)),  # smaller than a patch: the patch shrinks to the input
        ((2, 1, 5), (1, 1)),
    ],
)
def test_any_input_shape(shape, grid):
    net = SpectrogramViT(shape, patch_size=8, patch_stride=4, **SMALL)
    assert net.grid == grid
    assert net.pos_embed.shape == (1, grid[0] * grid[1], 16)
    x = torch.randn(3, *shape, requires_grad=True)
    y = net(x)
    assert y.shape == (3, net.out_features) == (3, 16)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    ("size", "patch", "stride"),
    [((32, 32), (8, 8), (4, 4)), ((66, 20), (16, 4), (10, 4)), ((40, 24), (6, 4), (2, 2))],
)
def test_overlapping_patch_grid(size, patch, stride):
    h, w = size
    expected = ((h - patch[0]) // stride[0] + 1, (w - patch[1]) // stride[1] + 1)
    net = SpectrogramViT((1, h, w), patch_size=patch, patch_stride=stride, **SMALL)
    assert net.grid == expected
    assert net.patch_embed(torch.zeros(1, 1, h, w)).shape[-2:] == expected
    assert net.tokens(torch.zeros(2, 1, h, w)).shape == (2, 1 + expected[0] * expected[1], 16)


def test_padding_keeps_the_edge():
    # 10x30 with 8x8 patches every 4: the last rows/columns need padding to be seen at all.
    assert grid_size(10, 8, 4, pad=True) == 2 and grid_size(10, 8, 4, pad=False) == 1
    padded = SpectrogramViT((1, 10, 30), patch_size=8, patch_stride=4, **SMALL).eval()
    cropped = SpectrogramViT((1, 10, 30), patch_size=8, patch_stride=4, pad=False, **SMALL)
    assert (padded.grid, cropped.eval().grid) == ((2, 7), (1, 6))
    x = torch.randn(1, 1, 10, 30)
    edge = x.clone()
    edge[..., -1, -1] += 10.0  # a pixel only the padded grid covers
    assert not torch.allclose(padded(x), padded(edge))
    assert torch.allclose(cropped(x), cropped(edge))


@pytest.mark.parametrize("pos_embed", ["learned", "sincos"])
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_position_embeddings_and_pools(pos_embed, pool):
    net = SpectrogramViT(
        (2, 16, 24), patch_size=(4, 8), patch_stride=(4, 4), pos_embed=pos_embed, pool=pool, **SMALL
    )
    assert net.grid == (4, 5)
    assert net.pos_embed.shape == (1, 20, 16)
    assert isinstance(net.pos_embed, torch.nn.Parameter) == (pos_embed == "learned")
    assert "pos_embed" in dict(net.named_parameters()) or pos_embed == "sincos"
    assert "pos_embed" not in net.state_dict() or pos_embed == "learned"
    assert (net.cls_token is not None) == (pool == "cls")
    n_tokens = 20 + (pool == "cls")
    assert net.tokens(torch.randn(2, 2, 16, 24)).shape == (2, n_tokens, 16)
    assert net(torch.randn(2, 2, 16, 24)).shape == (2, 16)
    # Other input sizes still work: learned positions are interpolated, sincos recomputed.
    assert net(torch.randn(2, 2, 20, 40)).shape == (2, 16)


def test_position_matters():
    """Moving a bright patch to another frequency row changes the output (not a bag of
    patches)."""
    torch.manual_seed(0)
    for kind in ("learned", "sincos"):
        net = SpectrogramViT((1, 16, 16), patch_size=4, pos_embed=kind, **SMALL).eval()
        a, b = torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
        a[..., 0:4, 0:4] = 1.0
        b[..., 8:12, 0:4] = 1.0
        assert not torch.allclose(net(a), net(b), atol=1e-5), kind


def test_sincos_table():
    table = sincos_2d(3, 5, 8)
    assert table.shape == (15, 8)
    # The first half depends on the row only, the second half on the column only.
    grid = table.reshape(3, 5, 8)
    assert torch.allclose(grid[:, :1, :4], grid[:, :, :4])
    assert torch.allclose(grid[:1, :, 4:], grid[:, :, 4:])
    assert len({tuple(r.tolist()) for r in table}) == 15


def test_attention_uses_sdpa(monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        calls.append((q.shape, kwargs.get("dropout_p", 0.0)))
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    net = SpectrogramViT(
        (1, 16, 16), patch_size=8, patch_stride=4, embed_dim=24, depth=3, num_heads=3,
        attn_dropout=0.25,
    )  # fmt: skip
    net.train()(torch.randn(2, 1, 16, 16))
    # One call per block: (B, heads, 1 + 3*3 tokens, head_dim), dropout only in training.
    assert calls == [(torch.Size([2, 3, 10, 8]), 0.25)] * 3
    calls.clear()
    net.eval()(torch.randn(2, 1, 16, 16))
    assert [p for _, p in calls] == [0.0] * 3


def test_param_groups_cover_all_parameters_once():
    net = SpectrogramViT((1, 16, 16), patch_size=4, **SMALL)
    decay, no_decay = net.param_groups(1e-3)
    ids = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in net.parameters())
    assert no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])
    assert any(p is net.pos_embed for p in no_decay["params"])
    assert any(p is net.cls_token for p in no_decay["params"])


def test_init_and_mean_pool_without_class_token():
    net = SpectrogramViT((1, 32, 32), patch_size=8, patch_stride=4, pool="mean", **SMALL)
    assert net.cls_token is None
    # Learned positions start from the sinusoid (embed_dim divisible by 4).
    assert torch.allclose(net.pos_embed.detach()[0], sincos_2d(7, 7, 16))
    qkv = net.blocks[0].attn.qkv.weight
    assert qkv.abs().max() <= 0.04 + 1e-6  # truncated normal, std 0.02, cut at 2 std
    odd = SpectrogramViT((1, 8, 8), patch_size=4, embed_dim=6, depth=1, num_heads=3)
    assert odd.pos_embed.abs().max() <= 0.04 + 1e-6


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_shape": (32, 32)},
        {"patch_size": 0},
        {"patch_size": (4, 4, 4)},
        {"patch_stride": (0, 2)},
        {"embed_dim": 30, "num_heads": 4},
        {"embed_dim": 18, "num_heads": 2, "pos_embed": "sincos"},
        {"pos_embed": "rope"},
        {"pool": "max"},
    ],
)
def test_rejects_bad_arguments(kwargs):
    args = {"input_shape": (1, 16, 16), "patch_size": 4, **SMALL} | kwargs
    with pytest.raises(ValueError):
        SpectrogramViT(**args)


# --- configs and training --------------------------------------------------------------------
def test_three_vit_sizes():
    assert_size_ladder(VIT_CONFIGS, at_least=3)


@pytest.mark.parametrize("path", VIT_CONFIGS, ids=lambda p: p.stem)
def test_config_name_matches_count(path):
    model = check_config_size(path, SpectrogramViT)
    assert model.net.grid == (7, 7)


@pytest.fixture(scope="module")
def toy16(tmp_path_factory) -> Path:
    """A 16x16 toy set: the configs' 8x8 patches every 4 pixels make a real 3x3 grid."""
    return make_vimh(tmp_path_factory.mktemp("toy16"), n_train=64, n_val=32, n_test=32,
                     height=16, width=16)  # fmt: skip


@pytest.mark.parametrize("name", [p.stem for p in VIT_CONFIGS])
def test_config_trains_fast_dev_run(compose_cfg, toy16, name):
    metrics = train_toy(compose_cfg, toy16, name, ["debug=fdr"])
    assert_complete_metrics(metrics, VIMHDataset(toy16).params)


def test_vit_learns(compose_cfg, toy):
    # 2x2 patches on the 8x8 toy: a 4x4 grid, so the pitch row must come from positions.
    overrides = [
        "model.net.patch_size=2",
        "model.net.patch_stride=2",
        "trainer.max_epochs=15",
        "data.batch_size=32",
        *QUIET,
    ]
    assert_beats_chance(train_toy(compose_cfg, toy, "vit_28k", overrides))
