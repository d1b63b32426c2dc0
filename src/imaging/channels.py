"""What an image channel is and where its frames sit: channel specs, value ranges, the hop.

See `src/imaging/imager.py` for the conventions these constants encode.
"""

from __future__ import annotations

from dataclasses import dataclass

from src.imaging.filters import FILTER_SCALES

KINDS = ("power", "ifreq", "group_delay", "modulation")

# Fixed ranges of the non-power kinds (see module docstring).
IFREQ_RANGE_BINS = 0.5  # the deviation is wrapped to the nearest bin centre, so +-half a bin
GROUP_DELAY_RANGE = 0.5  # +-half a window = the whole unambiguous range of a bin-to-bin phase step
MOD_DB_RANGE = (-60.0, 0.0)  # modulation amplitude of the [0, 1] power envelope, in dB
NEUTRAL = 128


@dataclass
class ChannelSpec:
    """One image channel: what is measured, on which frequency axis, at which resolution."""

    kind: str = "power"
    scale: str = "mel"
    n_fft: int = 256
    label: str | None = None

    def resolved_label(self) -> str:
        return self.label if self.label is not None else f"{self.kind}_{self.scale}_{self.n_fft}"


def check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def as_channel_spec(channel: ChannelSpec | dict, index: int) -> ChannelSpec:
    if isinstance(channel, dict):
        try:
            channel = ChannelSpec(**channel)
        except TypeError as err:
            raise ValueError(f"channels[{index}]: {err}") from None
    if not isinstance(channel, ChannelSpec):
        raise ValueError(f"channels[{index}] must be a ChannelSpec or dict, got {channel!r}")
    if channel.kind not in KINDS:
        raise ValueError(f"channels[{index}].kind must be one of {KINDS}, got {channel.kind!r}")
    if channel.scale not in FILTER_SCALES:
        raise ValueError(
            f"channels[{index}].scale must be one of {FILTER_SCALES}, got {channel.scale!r}"
        )
    n_fft = channel.n_fft
    if isinstance(n_fft, bool) or not isinstance(n_fft, int) or n_fft < 4 or n_fft % 2:
        raise ValueError(f"channels[{index}].n_fft must be an even integer >= 4, got {n_fft!r}")
    return ChannelSpec(channel.kind, channel.scale, n_fft, channel.resolved_label())


def choose_hop(n_samples: int, width: int) -> int:
    """Hop giving ``width`` frame centres ``t * hop`` that evenly span the whole note.

    Needs ``(width - 1) * hop <= n_samples <= width * hop``: the first centre is the first
    sample and at most one hop of note follows the last centre (the same frame count as
    ``torch.stft(center=True)``, which would only add a frame centred one past the end when
    ``width * hop == n_samples``). The largest candidate ``n_samples // (width - 1)`` is
    tried; if it fails no integer hop works and a ValueError says so.
    """
    check_int("n_samples", n_samples, 1)
    check_int("width", width, 2)
    hop = n_samples // (width - 1)
    if hop < 1 or hop * width < n_samples:
        raise ValueError(
            f"width={width} is not reachable for n_samples={n_samples}: the frames need an "
            f"integer hop h with {n_samples}/{width} <= h <= {n_samples}/{width - 1} so that "
            f"{width} centres 0, h, ..., {width - 1}h span the note. Use a smaller width "
            f"(width <= sqrt(n_samples) always works), a width with width - 1 or width dividing "
            f"n_samples, or a different n_samples."
        )
    return hop
