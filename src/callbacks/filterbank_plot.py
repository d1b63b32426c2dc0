"""Plot what a trainable front-end has learnt: its mel filterbank and a few STFT kernels.

Each validation epoch (after the sanity check) writes
`<default_root_dir>/filterbank/epoch_XXX.png` and, with a TensorBoardLogger, adds the figure
to TensorBoard, so the filters' drift away from their init can be followed during training.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning_utilities.core.rank_zero import rank_zero_only
from torch import nn

from src.models.components.frontend import kernel_response


def find_frontend(pl_module: nn.Module) -> nn.Module | None:
    """The model's STFT/mel front-end (anything with a `filterbank` and `stft` kernels)."""
    net = getattr(pl_module, "net", pl_module)
    frontend = getattr(net, "frontend", None)
    if frontend is None or not hasattr(frontend, "filterbank"):
        return None
    return frontend


def kernel_picks(n_freqs: int, n_kernels: int) -> list[int]:
    """`n_kernels` STFT bins spread evenly between the first and the last (not DC, Nyquist)."""
    return torch.linspace(1, n_freqs - 2, max(1, n_kernels)).round().long().unique().tolist()


def draw_filters(
    ax_fb,
    ax_k,
    filterbank: torch.Tensor,
    kernels: torch.Tensor,
    sample_rate: int,
    picks: list[int],
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
    eps: float = 1e-10,
) -> None:
    """A filterbank (n_freqs, n_mels) on `ax_fb` (unless None) and the picked STFT kernels'
    power responses on `ax_k`; with `init` = (filterbank, kernels) at initialisation, those
    dashed in grey beneath."""
    fb = filterbank.detach().float().cpu()
    bin_hz = torch.linspace(0, sample_rate / 2, fb.shape[0]).numpy()
    freqs, resp = kernel_response(kernels.cpu(), sample_rate, eps=eps)
    if init is not None:
        if ax_fb is not None:
            ax_fb.plot(bin_hz, init[0].detach().float().cpu().numpy(), color="0.6", lw=0.6, ls="--")
        _, resp0 = kernel_response(init[1].cpu(), sample_rate, eps=eps)
        for k in picks:
            ax_k.plot(freqs.numpy(), resp0[k].numpy(), color="0.6", lw=0.7, ls="--")
    if ax_fb is not None:
        ax_fb.plot(bin_hz, fb.numpy(), linewidth=0.8)
        title = f"filterbank ({fb.shape[1]} bands)"
        ax_fb.set(xlabel="frequency (Hz)", ylabel="weight", title=title)
    for k in picks:
        ax_k.plot(freqs.numpy(), resp[k].numpy(), linewidth=0.8, label=f"bin {k}")
    top = float(resp[picks].max())
    ax_k.set(
        xlabel="frequency (Hz)",
        ylabel="power response (dB)",
        title="STFT kernels",
        ylim=(top - 90.0, top + 5.0),
    )
    ax_k.legend(fontsize="small")


def filterbank_figure(frontend: nn.Module, n_kernels: int = 4, title: str = ""):
    """A matplotlib figure: the effective filterbank (left), kernel responses (right)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with torch.no_grad():
        fb = frontend.filterbank.detach()
    fig, (ax_fb, ax_k) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    picks = kernel_picks(fb.shape[0], n_kernels)
    draw_filters(ax_fb, ax_k, fb, frontend.stft, frontend.sample_rate, picks, eps=frontend.eps)
    if title:
        fig.suptitle(title)
    return fig


class FilterbankPlot(L.Callback):
    """Save (and send to TensorBoard) the front-end's filters every `every_n_epochs`."""

    def __init__(self, every_n_epochs: int = 1, n_kernels: int = 4) -> None:
        if every_n_epochs < 1 or n_kernels < 1:
            raise ValueError(f"need every_n_epochs >= 1, n_kernels >= 1, got {every_n_epochs}")
        self.every_n_epochs = int(every_n_epochs)
        self.n_kernels = int(n_kernels)

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        frontend = find_frontend(pl_module)
        if frontend is None:
            return
        import matplotlib.pyplot as plt

        epoch = trainer.current_epoch
        fig = filterbank_figure(frontend, self.n_kernels, title=f"epoch {epoch}")
        path = Path(trainer.default_root_dir) / "filterbank" / f"epoch_{epoch:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure("frontend/filterbank", fig, global_step=epoch)
        plt.close(fig)
