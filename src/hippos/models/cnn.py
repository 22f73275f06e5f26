"""A raw-waveform CNN baseline for the speech tasks, and the speech tasks' model section.

The CNN follows the plain raw-audio convnets (Dai et al. 2017, "Very Deep Convolutional Neural
Networks for Raw Waveforms", arXiv 1610.00087, the M3/M5 family): a wide first convolution on
the samples, then narrow ones, each followed by BatchNorm, ReLU and a max pool, then a global
mean over time and a linear head. It has no step size: it reads samples, not time, so fed audio
at another sampling rate it sees every sound shifted in frequency. That is the point of the
comparison with the SSMs, whose Δ can be rescaled (``hippos eval RUN --rate``).

Variable lengths (``lengths: long(B)``, zero padding after each clip) are exact: every
convolution has "same" padding and stride 1, the activations after a clip's end are zeroed
before each convolution and pool, BatchNorm's batch statistics are taken over the valid steps
only, a pool of width p (ceil mode: no clip drops to 0 steps) makes a length ``ceil(len / p)``,
and the mean is over the valid steps. A clip alone and the same clip padded in a batch give the
same logits (in eval mode).

``AudioModelConfig`` is a ``ModelConfig`` (the SSM classifier's fields) with ``kind`` (``ssm``:
``SequenceClassifier``; ``cnn``: ``CNNClassifier``) and the CNN's own fields; the audio tasks'
``--model.kind=cnn`` switches the model and keeps everything else of the run the same.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hippos.models.config import ModelConfig
from hippos.ops.checks import check_lengths, valid_steps

__all__ = ["KINDS", "AudioModelConfig", "CNNClassifier", "MaskedBatchNorm1d", "build_audio_model"]

KINDS = ("ssm", "cnn")


@dataclass
class AudioModelConfig(ModelConfig):
    """``ModelConfig`` + ``kind`` (``ssm`` or ``cnn``) + the CNN's fields (read only by ``kind=cnn``;
    the CNN also reads ``d_input``, ``n_classes`` and ``dropout``, the SSM classifier none of these)."""

    kind: str = "ssm"  # ssm: SequenceClassifier (S4 with mode=dplr, S4D with mode=diag); cnn: CNNClassifier
    cnn_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128, 128])  # one conv each
    cnn_kernel: int = 63  # the first convolution's width in samples (odd); the others are 3 wide
    cnn_pool: int = 4  # max pool width and stride after every convolution but the last

    def validate(self) -> AudioModelConfig:
        """``ModelConfig.validate`` and the checks of ``kind`` and the CNN's fields; return self."""
        super().validate()
        check_audio_model(self)
        return self


def check_audio_model(cfg: AudioModelConfig) -> None:
    """Range checks of the fields ``AudioModelConfig`` adds (``ValueError`` naming the key)."""
    if cfg.kind not in KINDS:
        raise ValueError(f"model.kind must be one of {', '.join(KINDS)}, got {cfg.kind!r}")
    ch = cfg.cnn_channels
    if not isinstance(ch, (list, tuple)) or not ch or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in ch):
        raise ValueError(f"model.cnn_channels must be a non-empty list of integers >= 1, got {ch!r}")
    if isinstance(cfg.cnn_kernel, bool) or cfg.cnn_kernel < 1 or cfg.cnn_kernel % 2 == 0:
        raise ValueError(f"model.cnn_kernel must be an odd integer >= 1, got {cfg.cnn_kernel!r}")
    if isinstance(cfg.cnn_pool, bool) or cfg.cnn_pool < 1:
        raise ValueError(f"model.cnn_pool must be an integer >= 1, got {cfg.cnn_pool!r}")


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over the channels of ``x: r(B C L)`` whose batch statistics (training) count only
    the steps where ``mask: r(B 1 L)`` is 1; in eval mode the running statistics, as BatchNorm1d."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None or not self.training:
            return super().forward(x)
        n = mask.sum()
        mean = (x * mask).sum((0, 2)) / n  # (C,)
        var = (((x - mean[:, None]) ** 2) * mask).sum((0, 2)) / n
        with torch.no_grad():
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
            self.running_mean.mul_(1 - m).add_(m * mean)
            self.running_var.mul_(1 - m).add_(m * var * (n / (n - 1).clamp(min=1)))
            self.num_batches_tracked.add_(1)
        y = (x - mean[:, None]) / torch.sqrt(var[:, None] + self.eps)
        return y * self.weight[:, None] + self.bias[:, None]


class CNNClassifier(nn.Module):
    """``x: r(B L d_input)``, ``lengths: long(B)`` or None -> ``(logits: r(B n_classes), None)``.

    ``conv(k=cnn_kernel) -> [BN, ReLU, maxpool] -> conv(k=3) -> ... -> masked mean -> dropout ->
    linear``; one conv per entry of ``cnn_channels``, a pool after all but the last."""

    def __init__(self, cfg: AudioModelConfig):
        super().__init__()
        if not isinstance(cfg, AudioModelConfig):
            raise TypeError(f"CNNClassifier takes an AudioModelConfig, got {type(cfg).__name__}")
        cfg.validate()
        self.cfg = cfg
        widths = [cfg.d_input, *cfg.cnn_channels]
        kernels = [cfg.cnn_kernel] + [3] * (len(cfg.cnn_channels) - 1)
        self.convs = nn.ModuleList(
            nn.Conv1d(c_in, c_out, k, padding=k // 2) for c_in, c_out, k in zip(widths[:-1], widths[1:], kernels)
        )
        self.norms = nn.ModuleList(MaskedBatchNorm1d(c) for c in cfg.cnn_channels)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(widths[-1], cfg.n_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        if x.dim() != 3 or x.shape[-1] != self.cfg.d_input:
            raise ValueError(f"expected input of shape (B, L, {self.cfg.d_input}), got {tuple(x.shape)}")
        B, L, _ = x.shape
        if lengths is None:
            lengths = torch.full((B,), L, dtype=torch.long, device=x.device)
        else:
            check_lengths(lengths, B, L)
        h = x.transpose(1, 2)  # (B d L)
        p = self.cfg.cnn_pool
        last = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            mask = valid_steps(lengths, h.shape[-1]).to(h.dtype)[:, None]  # (B 1 L)
            h = conv(h * mask)
            h = F.relu(norm(h, mask)) * mask  # >= 0, 0 after each clip's end
            if i < last and p > 1:
                h = F.max_pool1d(h, p, p, ceil_mode=True)
                lengths = torch.div(lengths + p - 1, p, rounding_mode="floor")  # ceil(len / p)
        mask = valid_steps(lengths, h.shape[-1]).to(h.dtype)  # (B L')
        pooled = (h * mask[:, None]).sum(-1) / lengths[:, None].to(h.dtype)  # (B C)
        return self.head(self.dropout(pooled)), None

    @staticmethod
    def out_length(length: int, cfg: AudioModelConfig) -> int:
        """Steps left at the end for a clip of ``length`` samples."""
        for _ in range(len(cfg.cnn_channels) - 1):
            length = math.ceil(length / cfg.cnn_pool)
        return length


def build_audio_model(cfg: ModelConfig) -> nn.Module:
    """``kind=cnn`` -> ``CNNClassifier``; otherwise the SSM ``SequenceClassifier`` (private config copies)."""
    if getattr(cfg, "kind", "ssm") == "cnn":
        return CNNClassifier(dataclasses.replace(cfg))
    from hippos.models.classifier import SequenceClassifier

    return SequenceClassifier(dataclasses.replace(cfg))
