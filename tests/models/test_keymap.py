"""Old checkpoints load through the key map: the state-dict key names of a small classifier and a
small language model as the code before ``Block`` wrote them (recorded from that code, below),
mapped to today's names, loaded strictly, with identical outputs."""

from __future__ import annotations

import re
from collections import OrderedDict

import pytest
import torch

from hippos.models import (
    LanguageModel,
    LMConfig,
    ModelConfig,
    SequenceClassifier,
    upgrade_state_dict,
)
from hippos.models.keymap import upgrade_key

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread

# ``list(model.state_dict())`` of the models below, from the code before Block (ResidualBlock with
# ``layer``, ``norm``; LMBlock with ``norm1``, ``mixer``, ``norm2``, ``mlp``).
# SequenceClassifier(CLASSIFIER_CFGS["prenorm"])
OLD_CLASSIFIER_KEYS = [
    "backbone.encoder.weight",
    "backbone.encoder.bias",
    "backbone.blocks.0.layer.D",
    "backbone.blocks.0.layer.kernel.log_dt",
    "backbone.blocks.0.layer.kernel.log_neg_re",
    "backbone.blocks.0.layer.kernel.im",
    "backbone.blocks.0.layer.kernel.B",
    "backbone.blocks.0.layer.kernel.C",
    "backbone.blocks.0.layer.output.weight",
    "backbone.blocks.0.layer.output.bias",
    "backbone.blocks.0.norm.weight",
    "backbone.blocks.0.norm.bias",
    "backbone.blocks.1.layer.D",
    "backbone.blocks.1.layer.kernel.log_dt",
    "backbone.blocks.1.layer.kernel.log_neg_re",
    "backbone.blocks.1.layer.kernel.im",
    "backbone.blocks.1.layer.kernel.B",
    "backbone.blocks.1.layer.kernel.C",
    "backbone.blocks.1.layer.output.weight",
    "backbone.blocks.1.layer.output.bias",
    "backbone.blocks.1.norm.weight",
    "backbone.blocks.1.norm.bias",
    "backbone.final_norm.weight",
    "backbone.final_norm.bias",
    "head.weight",
    "head.bias",
]

# SequenceClassifier(CLASSIFIER_CFGS["postnorm"]): BatchNorm buffers, bidirectional (kernel_rev), no final norm
OLD_POSTNORM_CLASSIFIER_KEYS = [
    "backbone.encoder.weight",
    "backbone.encoder.bias",
    "backbone.blocks.0.layer.D",
    "backbone.blocks.0.layer.kernel.log_dt",
    "backbone.blocks.0.layer.kernel.log_neg_re",
    "backbone.blocks.0.layer.kernel.im",
    "backbone.blocks.0.layer.kernel.B",
    "backbone.blocks.0.layer.kernel.C",
    "backbone.blocks.0.layer.kernel_rev.log_dt",
    "backbone.blocks.0.layer.kernel_rev.log_neg_re",
    "backbone.blocks.0.layer.kernel_rev.im",
    "backbone.blocks.0.layer.kernel_rev.B",
    "backbone.blocks.0.layer.kernel_rev.C",
    "backbone.blocks.0.layer.output.weight",
    "backbone.blocks.0.layer.output.bias",
    "backbone.blocks.0.norm.weight",
    "backbone.blocks.0.norm.bias",
    "backbone.blocks.0.norm.running_mean",
    "backbone.blocks.0.norm.running_var",
    "backbone.blocks.0.norm.num_batches_tracked",
    "backbone.blocks.1.layer.D",
    "backbone.blocks.1.layer.kernel.log_dt",
    "backbone.blocks.1.layer.kernel.log_neg_re",
    "backbone.blocks.1.layer.kernel.im",
    "backbone.blocks.1.layer.kernel.B",
    "backbone.blocks.1.layer.kernel.C",
    "backbone.blocks.1.layer.kernel_rev.log_dt",
    "backbone.blocks.1.layer.kernel_rev.log_neg_re",
    "backbone.blocks.1.layer.kernel_rev.im",
    "backbone.blocks.1.layer.kernel_rev.B",
    "backbone.blocks.1.layer.kernel_rev.C",
    "backbone.blocks.1.layer.output.weight",
    "backbone.blocks.1.layer.output.bias",
    "backbone.blocks.1.norm.weight",
    "backbone.blocks.1.norm.bias",
    "backbone.blocks.1.norm.running_mean",
    "backbone.blocks.1.norm.running_var",
    "backbone.blocks.1.norm.num_batches_tracked",
    "head.weight",
    "head.bias",
]

# LanguageModel(LM_CFG): an H3 layer, then an attention layer
OLD_LM_KEYS = [
    "embedding.weight",
    "blocks.0.norm1.weight",
    "blocks.0.norm1.bias",
    "blocks.0.mixer.D_shift",
    "blocks.0.mixer.D_diag",
    "blocks.0.mixer.qkv_proj.weight",
    "blocks.0.mixer.qkv_proj.bias",
    "blocks.0.mixer.shift.B",
    "blocks.0.mixer.shift.C",
    "blocks.0.mixer.diag.log_dt",
    "blocks.0.mixer.diag.log_neg_re",
    "blocks.0.mixer.diag.im",
    "blocks.0.mixer.diag.B",
    "blocks.0.mixer.diag.C",
    "blocks.0.mixer.out_proj.weight",
    "blocks.0.mixer.out_proj.bias",
    "blocks.0.norm2.weight",
    "blocks.0.norm2.bias",
    "blocks.0.mlp.fc1.weight",
    "blocks.0.mlp.fc1.bias",
    "blocks.0.mlp.fc2.weight",
    "blocks.0.mlp.fc2.bias",
    "blocks.1.norm1.weight",
    "blocks.1.norm1.bias",
    "blocks.1.mixer.qkv.weight",
    "blocks.1.mixer.qkv.bias",
    "blocks.1.mixer.out_proj.weight",
    "blocks.1.mixer.out_proj.bias",
    "blocks.1.norm2.weight",
    "blocks.1.norm2.bias",
    "blocks.1.mlp.fc1.weight",
    "blocks.1.mlp.fc1.bias",
    "blocks.1.mlp.fc2.weight",
    "blocks.1.mlp.fc2.bias",
    "final_norm.weight",
    "final_norm.bias",
]

CLASSIFIER_CFGS = {
    "prenorm": ModelConfig(d_input=3, n_classes=5, d_model=8, n_layers=2, d_state=4, mode="diag", l_max=32),
    "postnorm": ModelConfig(d_input=3, n_classes=5, d_model=8, n_layers=2, d_state=4, mode="diag", prenorm=False, norm="batch", bidirectional=True, l_max=32),
}
OLD_KEYS = {"prenorm": OLD_CLASSIFIER_KEYS, "postnorm": OLD_POSTNORM_CLASSIFIER_KEYS}
LM_CFG = LMConfig(vocab_size=11, d_model=8, n_layers=2, mixer="h3", attn_layers=(1,), d_state=4, shift_state=4, n_heads=2, l_max=32, max_len=32)


def to_old(sd: dict, renames: dict[str, str]) -> dict:
    """Today's state dict in the old names: ``blocks.{i}.<new>.`` -> ``blocks.{i}.<old>.``."""
    pattern = re.compile(r"(blocks\.\d+\.)(" + "|".join(renames) + r")\.")
    return {pattern.sub(lambda m: m.group(1) + renames[m.group(2)] + ".", k, count=1): v for k, v in sd.items()}


def randomized(model: torch.nn.Module) -> torch.nn.Module:
    """Every float parameter and buffer perturbed (norms away from (1, 0), BatchNorm statistics
    away from (0, 1)), so a tensor loaded into the wrong place shows in the outputs."""
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(0.1 * torch.rand_like(t))
    return model


@pytest.mark.parametrize("variant", ["prenorm", "postnorm"])
def test_old_classifier_checkpoint_loads_with_identical_outputs(variant):
    cfg = CLASSIFIER_CFGS[variant]
    torch.manual_seed(1)
    model = randomized(SequenceClassifier(cfg)).eval()
    old = to_old(model.state_dict(), {"mixer": "layer"})
    assert sorted(old) == sorted(OLD_KEYS[variant])  # the old names, exactly
    torch.manual_seed(2)
    fresh = SequenceClassifier(cfg).eval()
    with pytest.raises(RuntimeError, match="Missing key"):
        fresh.load_state_dict(old)  # without the map an old checkpoint does not load
    fresh.load_state_dict(upgrade_state_dict(old), strict=True)
    x, lengths = torch.randn(3, 12, 3), torch.tensor([12, 9, 5])
    torch.testing.assert_close(fresh(x, lengths=lengths)[0], model(x, lengths=lengths)[0], rtol=0, atol=0)


def test_old_language_model_checkpoint_loads_with_identical_outputs():
    torch.manual_seed(1)
    model = randomized(LanguageModel(LM_CFG)).eval()
    old = to_old(model.state_dict(), {"norm": "norm1", "mlp_norm": "norm2"})
    assert sorted(old) == sorted(OLD_LM_KEYS)
    torch.manual_seed(2)
    fresh = LanguageModel(LM_CFG).eval()
    fresh.load_state_dict(upgrade_state_dict(old), strict=True)
    tokens = torch.randint(0, 11, (2, 9))
    torch.testing.assert_close(fresh(tokens)[0], model(tokens)[0], rtol=0, atol=0)


def test_the_map_is_idempotent_on_new_state_dicts():
    for model in (SequenceClassifier(CLASSIFIER_CFGS["postnorm"]), LanguageModel(LM_CFG)):
        sd = model.state_dict()
        up = upgrade_state_dict(sd)
        assert list(up) == list(sd) and all(up[k] is sd[k] for k in sd)
        assert upgrade_state_dict(up).keys() == up.keys()
        assert up._metadata.keys() == sd._metadata.keys()  # torch's per-module metadata comes along
        model.load_state_dict(up, strict=True)


def test_keys_and_metadata():
    assert upgrade_key("backbone.blocks.3.layer.kernel.log_dt") == "backbone.blocks.3.mixer.kernel.log_dt"
    assert upgrade_key("blocks.12.norm1.weight") == "blocks.12.norm.weight"
    assert upgrade_key("blocks.0.norm2.bias") == "blocks.0.mlp_norm.bias"
    assert upgrade_key("module.blocks.0.norm2.bias") == "module.blocks.0.mlp_norm.bias"  # a DDP prefix
    assert upgrade_key("backbone.blocks.0.layer") == "backbone.blocks.0.mixer"  # a module name (metadata)
    for same in ("blocks.0.mixer.layer_scale", "blocks.0.norm.weight", "blocks.0.layers.x", "norm1.weight", "blocks.0.mixer.norm1.w"):
        assert upgrade_key(same) == same
    old = OrderedDict(to_old(LanguageModel(LM_CFG).state_dict(), {"norm": "norm1", "mlp_norm": "norm2"}))
    old._metadata = OrderedDict((k, {"version": 1}) for k in ("", "blocks.0.norm1", "blocks.0.mixer", "blocks.0.norm2"))
    assert list(upgrade_state_dict(old)._metadata) == ["", "blocks.0.norm", "blocks.0.mixer", "blocks.0.mlp_norm"]


def test_a_mix_of_old_and_new_names_is_refused():
    sd = LanguageModel(LM_CFG).state_dict()
    mixed = {**sd, "blocks.0.norm1.weight": sd["blocks.0.norm.weight"]}
    with pytest.raises(ValueError, match="both 'blocks.0.norm1.weight' .* and 'blocks.0.norm.weight'.*mix of two formats"):
        upgrade_state_dict(mixed)
    with pytest.raises(TypeError, match="state dict"):
        upgrade_state_dict([("blocks.0.norm1.weight", None)])
