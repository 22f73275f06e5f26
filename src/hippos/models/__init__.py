"""Models built from hippos layers: a deep SSM backbone, a sequence classifier, a language model;
every one returns ``(out, state)``. :func:`upgrade_state_dict` maps old checkpoints' keys."""

from hippos.models.backbone import SSMBackbone
from hippos.models.classifier import SequenceClassifier
from hippos.models.config import ModelConfig
from hippos.models.keymap import upgrade_state_dict
from hippos.models.lm import LanguageModel
from hippos.models.lm_config import LMConfig

__all__ = ["LMConfig", "LanguageModel", "ModelConfig", "SSMBackbone", "SequenceClassifier", "upgrade_state_dict"]
