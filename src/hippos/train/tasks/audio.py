"""``audio`` and ``fsdd``: classification of raw waveforms, and evaluation at another sampling rate.

* ``hippos train audio --data.path=DIR``: your own recordings (``hippos.data.audio``), one
  subfolder per class or ``--data.label_pattern=REGEX`` on the file names; one sample rate (or
  ``--data.sample_rate=HZ``); a seeded train / val / test split as ``classify``.
* ``hippos train fsdd``: the Free Spoken Digit Dataset (``hippos.data.fsdd``), the official split
  or ``--data.split=speaker`` (one speaker held out).

The model (both tasks) is after the S4 reference's Speech Commands config (REFERENCE.md §4:
pre-norm residual S4 blocks, GLU output, mean pooling, H 128, N 64, lr 0.01), scaled to a CPU:
S4D (``mode=diag``, LegS init), 4 blocks, H 64, N 64, **bidirectional** (the reference's current
``sc/s4-sc.yaml``; its paper-era config was causal), pre-LayerNorm, dropout 0.1, mean pooling over
the valid steps: 133,770 parameters. ``--model.mode=dplr`` gives S4, ``--model.kind=cnn`` the
raw-audio CNN of ``hippos.models.cnn`` (133,770 parameters too). See docs/speech.md.

**Another sampling rate** (``hippos eval RUN --rate R --resample METHOD``, :meth:`AudioTask.at_rate`):
the split's clips (at the rate the model was trained at) are resampled to R times as many
samples per second, per-clip normalized as in training, and an SSM model is called with
``rate=R``, which discretizes every SSM with step Δ/R: at R = 0.5 (half the samples) Δ is
doubled, so the model sees the same continuous-time signal. A CNN has no Δ: it just reads the
resampled audio.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
from torch import nn

from hippos.models.cnn import AudioModelConfig, build_audio_model
from hippos.train.config import TrainConfig, require
from hippos.train.task import ClassificationTask, TaskData

__all__ = ["AUDIO_ARTIFACT", "AtRate", "AudioTask", "FsddTask", "UserAudioTask", "audio_defaults"]

AUDIO_ARTIFACT = "audio.json"


def audio_defaults(task: str, data) -> TrainConfig:
    """The speech tasks' config: the training setup and the S4D model of the module docstring."""
    cfg = TrainConfig(task=task, epochs=20, batch_size=16, lr=1e-2, weight_decay=0.05, warmup_fraction=0.05,
                      grad_clip=1.0, log_every=25)
    cfg.data = data
    m = cfg.model = AudioModelConfig()
    m.d_input, m.n_classes = 1, 10
    m.d_model, m.n_layers, m.d_state = 64, 4, 64
    m.mode, m.init, m.bidirectional = "diag", "legs", True
    m.dropout, m.prenorm, m.norm, m.pool, m.output = 0.1, True, "layer", "mean", "glu"
    return cfg


class AtRate(nn.Module):
    """``model`` called with ``rate=rate`` (an SSM classifier: every S4 layer at step Δ/rate)."""

    def __init__(self, model: nn.Module, rate: float):
        super().__init__()
        self.model, self.rate = model, float(rate)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        return self.model(x, lengths=lengths, rate=self.rate)


def _names_digest(names) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


class AudioTask(ClassificationTask):
    """Base of the speech tasks: ``_load(cfg) -> AudioSplits``; datasets, artifact, model, rate change."""

    def _load(self, cfg: TrainConfig):  # pragma: no cover - abstract
        raise NotImplementedError

    def check(self, cfg: TrainConfig) -> None:
        super().check(cfg)
        if not isinstance(cfg.model, AudioModelConfig):
            raise TypeError(f"task {self.name!r}: its model section must be an AudioModelConfig")
        cfg.model.validate()
        require(cfg, cfg.model.d_input == 1, "model.d_input", "1 (one sample per step)")
        require(cfg, 0 < cfg.data.val_fraction < 1, "data.val_fraction", "in (0, 1)")

    def load_data(self, cfg: TrainConfig) -> TaskData:
        from hippos.data.audio import clips_dataset

        splits = self._load(cfg)
        norm = cfg.data.normalize
        sets = [clips_dataset(splits.split(s), norm) for s in ("train", "val", "test")]
        info = {
            "format": "hippos.audio",
            "version": 1,
            "sample_rate": splits.sample_rate,
            "file_sample_rates": splits.file_rates,
            "normalize": norm,
            "classes": list(splits.classes),
            "splits": {s: {"n": len(splits.split(s)), "files_sha256": _names_digest(splits.split(s).names)}
                       for s in ("train", "val", "test")},
        }
        # The S4 (DPLR) kernel costs l_max on every call, whatever the batch's length: set it up for the power of
        # two at or above the median training clip (FSDD: 4096; a longer batch doubles it for that call). Setting it
        # to the longest clip (18,262) made an S4 forward + backward 2x slower (2.1 s vs 1.1 s, 16 clips of 3,366 samples).
        kernel_length = 1 << max(0, int(np.ceil(np.log2(np.median(sets[0].lengths)))))
        return TaskData(*sets, artifacts={AUDIO_ARTIFACT: json.dumps(info, indent=1) + "\n"},
                        extra={"d_input": 1, "n_classes": len(splits.classes), "classes": list(splits.classes),
                               "kernel_length": kernel_length, "sample_rate": splits.sample_rate, "clips": splits})

    def fit_config(self, cfg: TrainConfig, data: TaskData) -> TrainConfig:
        cfg = super().fit_config(cfg, data)
        cfg.model.l_max = int(data.extra["kernel_length"])  # S4 (dplr) only: see load_data
        if cfg.data.sample_rate is None:
            cfg.data.sample_rate = int(data.extra["sample_rate"])  # config.json says what the model was trained at
        return cfg

    def build_model(self, cfg: TrainConfig) -> nn.Module:
        """``model.kind``: ``ssm`` -> ``SequenceClassifier`` (S4/S4D), ``cnn`` -> ``CNNClassifier``."""
        return build_audio_model(cfg.model)

    def at_rate(self, model: nn.Module, data: TaskData, cfg: TrainConfig, split: str, rate: float,
                method: str = "poly"):
        """``(model_at_rate, dataset, info)``: ``split`` resampled to ``rate`` times the training sample
        rate by ``method`` (``hippos.data.audio.resample``), normalized per clip as in training, and the
        model called at ``rate`` (SSM: step Δ/rate; a CNN reads the resampled audio as it is)."""
        from hippos.data.audio import clips_dataset, resample_clips

        sr = int(data.extra["sample_rate"])
        clips = resample_clips(data.extra["clips"].split(split), rate, method)
        ds = clips_dataset(clips, cfg.data.normalize)
        ssm = getattr(cfg.model, "kind", "ssm") == "ssm"
        info = {"rate": float(rate), "resample": method, "sample_rate": sr * float(rate), "trained_sample_rate": sr,
                "dt_scale": (1.0 / float(rate)) if ssm else None}
        return (AtRate(model, rate) if ssm else model), ds, info


class FsddTask(AudioTask):
    name = "fsdd"
    description = "spoken digits from raw 8 kHz audio (FSDD, in <data_dir>/fsdd): official or --data.split=speaker"

    def defaults(self) -> TrainConfig:
        from hippos.data.fsdd import FsddDataConfig

        return audio_defaults("fsdd", FsddDataConfig())

    def check(self, cfg: TrainConfig) -> None:
        from hippos.data.fsdd import SPLITS

        super().check(cfg)
        require(cfg, cfg.data.split in SPLITS, "data.split", "one of " + ", ".join(SPLITS))

    def _load(self, cfg: TrainConfig):
        from hippos.data.fsdd import load_fsdd

        return load_fsdd(cfg.data, cfg.data_dir)


class UserAudioTask(AudioTask):
    name = "audio"
    description = "classification of your own recordings: --data.path=DIR of .wav files, one subfolder per class"

    def defaults(self) -> TrainConfig:
        from hippos.data.audio import AudioDataConfig

        return audio_defaults("audio", AudioDataConfig())

    def check(self, cfg: TrainConfig) -> None:
        super().check(cfg)
        require(cfg, 0 < cfg.data.test_fraction < 1, "data.test_fraction", "in (0, 1)")

    def _load(self, cfg: TrainConfig):
        from hippos.data.audio import load_audio_folder

        return load_audio_folder(cfg.data)
