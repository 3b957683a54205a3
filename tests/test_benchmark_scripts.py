"""The benchmark scripts' configurations are valid before anyone spends CPU-hours on them."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest
import yaml

from gan_lightning.commands.sweep import combinations, parse_grid
from gan_lightning.tricks.augment import Augmentation, build_augmentation

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(value: str):
    """What ``--model.augment=<value>`` gives the module: None, a registered name, or a class_path block."""
    spec = yaml.safe_load(value)
    if not isinstance(spec, dict):
        return build_augmentation(spec)
    module_name, class_name = spec["class_path"].rsplit(".", 1)
    return getattr(importlib.import_module(module_name), class_name)(**spec.get("init_args", {}))


def test_limited_digits_augmentations_build_and_survive_the_sweep_grid():
    augments = _script("benchmark_limited_digits").AUGMENTS
    (key, values), = parse_grid([f"model.augment={','.join(augments.values())}"])
    assert values == list(augments.values())  # commas inside a class_path block do not split it
    names = [name for name, _ in combinations([(key, values)])]
    assert len(set(names)) == len(names)  # every row gets its own run directory

    built = {name: _build(value) for name, value in augments.items()}
    assert built["none"] is None
    assert all(isinstance(a, Augmentation) for name, a in built.items() if name != "none")
    assert built["diffaugment-translation"].policy == "translation"
    assert built["diffaugment-color-translation"].policy == "color,translation"
    assert float(built["ada-p0.2"].p) == pytest.approx(0.2) and built["ada-p0.2"].target is None
    assert built["ada-100k"].speed_images == 100_000


def test_mode_benchmark_plain_rows_leave_out_the_shipped_tricks():
    modes = _script("benchmark_modes")
    for name, (experiment, options) in modes.CONFIGS.items():
        assert (ROOT / experiment.format(mixture="ring8")).is_file(), name
        if name in ("nonsaturating", "wgan-gp", "hinge+sn"):
            assert "--model.regularizers=[]" in options and "--model.ema_decay=null" in options
