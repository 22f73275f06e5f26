"""Config overrides: parsing, type checks, errors with suggestions, JSON files, task defaults."""

from __future__ import annotations

import json

import pytest

from hippos.cli.train import parse_train_args, resolve_train_config
from hippos.train import config as C
from hippos.train import default_config, get_task, task_names
from hippos.train.registry import config_from_dict


def test_parse_override_args_forms():
    got = C.parse_override_args(["--lr=3e-3", "--model.d_model", "64", "--model.prenorm", "--max-steps=none"])
    assert got == [("lr", "3e-3"), ("model.d_model", "64"), ("model.prenorm", "true"), ("max_steps", "none")]
    with pytest.raises(ValueError, match="--key=value"):
        C.parse_override_args(["lr=3"])


def test_overrides_are_typed():
    cfg = C.apply_overrides(
        C.TrainConfig(),
        [("lr", "3e-3"), ("epochs", "1e1"), ("model.d_model", "64"), ("model.prenorm", "off"), ("max_steps", "none"),
         ("data_dir", "/x"), ("model.dt_min", "2")],
    )
    assert cfg.lr == 3e-3 and cfg.epochs == 10 and isinstance(cfg.epochs, int)
    assert cfg.model.d_model == 64 and cfg.model.prenorm is False and cfg.max_steps is None
    assert cfg.data_dir == "/x" and cfg.model.dt_min == 2.0 and isinstance(cfg.model.dt_min, float)
    assert C.TrainConfig().lr == 1e-3  # the input is not modified


@pytest.mark.parametrize(
    "key,value,exc,fragment",
    [
        ("epochs", "1.5", TypeError, "--epochs expects an integer, got '1.5'"),
        ("epochs", "ten", TypeError, "integer"),
        ("model.prenorm", "maybe", TypeError, "boolean"),
        ("lr", "fast", TypeError, "--lr expects a number"),
        ("lr", "inf", ValueError, "finite"),
        ("epochs", "none", TypeError, "integer"),
        ("model.d_modle", "3", ValueError, "did you mean 'model.d_model'"),
        ("d_model", "3", ValueError, "did you mean 'model.d_model'"),
        ("learning_rate", "3", ValueError, "unknown config key 'learning_rate'"),
        ("model", "3", ValueError, "is a section"),
        ("lr.x", "3", ValueError, "unknown config key"),
    ],
)
def test_override_errors(key, value, exc, fragment):
    with pytest.raises(exc) as e:
        C.apply_overrides(C.TrainConfig(), [(key, value)])
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_json_values_are_type_checked():
    cfg = C.update_from_dict(C.TrainConfig(), {"lr": 1, "model": {"d_model": 16}, "data.length": 100, "max_steps": None})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.model.d_model == 16 and cfg.data.length == 100
    for bad in ({"epochs": True}, {"epochs": 1.5}, {"lr": "0.1"}, {"model": {"prenorm": 1}}, {"task": 3}, {"epochs": None}):
        with pytest.raises(TypeError):
            C.update_from_dict(C.TrainConfig(), bad)
    with pytest.raises(ValueError, match="unknown config key 'model.width'"):
        C.update_from_dict(C.TrainConfig(), {"model": {"width": 3}})


def test_config_json_roundtrip(tmp_path):
    cfg = C.apply_overrides(default_config("smnist"), [("model.dropout", "0.2"), ("max_steps", "7")])
    C.save_config(cfg, tmp_path / "c.json")
    back = config_from_dict(C.load_config(tmp_path / "c.json"))
    assert back == cfg


def test_all_keys_cover_nested_sections():
    keys = C.all_keys()
    assert {"lr", "model.d_model", "model.pool", "data.length", "max_steps"} <= set(keys)
    assert "model" not in keys


def test_validate_ranges():
    for key, value in (("lr", "0"), ("epochs", "0"), ("min_lr_ratio", "2"), ("max_steps", "0")):
        with pytest.raises(ValueError, match=key.split(".")[-1]):
            C.validate(C.apply_overrides(C.TrainConfig(), [(key, value)]))
    with pytest.raises(ValueError, match="data.noise"):  # the data section is checked by its task
        get_task("delay").check(C.apply_overrides(default_config("delay"), [("data.noise", "-1")]))


def test_task_defaults_follow_the_papers():
    for name in ("smnist", "psmnist"):
        cfg = default_config(name)
        m = cfg.model
        assert (m.n_layers, m.d_model, m.d_state, m.prenorm, m.norm) == (4, 256, 64, True, "layer")
        assert cfg.batch_size == 50 and cfg.lr == 1e-3 and m.ssm_lr is None  # None: min(lr, 1e-3)
        assert (m.d_input, m.n_classes) == (1, 10)
    d = default_config("delay")
    assert d.model.pool == "last" and d.model.mode == "diag"
    assert set(task_names()) >= {"delay", "smnist", "psmnist", "classify", "forecast", "ar", "ih", "charlm"}
    assert default_config("delay") is not default_config("delay")


def test_precedence_defaults_file_overrides(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"task": "psmnist", "lr": 0.002, "model": {"d_model": 32}}))
    ns, ov = parse_train_args(["--config", str(f), "--model.d_model=64", "--epochs", "3"])
    cfg = resolve_train_config(ns, ov)
    assert cfg.task == "psmnist" and cfg.lr == 0.002 and cfg.model.d_model == 64 and cfg.epochs == 3
    assert cfg.model.n_layers == 4  # from the psmnist defaults
    ns, ov = parse_train_args(["--lr", "1e-2", "smnist", "--no-progress"])
    assert ns.task == "smnist" and ns.no_progress and ov == [("lr", "1e-2")]
