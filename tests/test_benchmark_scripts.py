"""The benchmark scripts' configurations are valid before anyone spends CPU-hours on them."""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

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


def test_limited_digits_curve_table_reads_results_back_from_json():
    bench = _script("benchmark_limited_digits")
    assert bench.run_sweep.__defaults__ == (0, "default", False)  # one evaluation at the end unless --eval-every
    results = [{"images": 100, "augment": "none", "seed": 0, "fid_by_step": {1500: 44.0, 3000: 50.0}},
               {"images": 100, "augment": "none", "seed": 1, "fid_by_step": {"1500": 46.0, "3000": 52.0}}]  # as JSON has it
    lines = bench.curve_table(results).splitlines()
    assert lines[0] == "| training images | augmentation | FD at 1,500 | FD at 3,000 | seeds |"
    assert lines[2] == "| 100 | none | 45.00 ± 1.00 | 51.00 ± 1.00 | 2 |"
    assert bench.curve_table([{**results[0], "fid_by_step": {1500: 44.0}}]) == ""  # one step: no curve
    options = [o for o in bench.RUN_OPTIONS if "every_n_steps" in o]
    assert options == ["--trainer.callbacks.every_n_steps=0"]  # what --eval-every replaces


def test_limited_digits_runs_the_start_here_experiment_on_digits():
    from gan_lightning.commands.sweep import resolve_fit_config

    config, adapt = _script("benchmark_limited_digits").EXPERIMENTS["small_images_32"]
    fit = resolve_fit_config(["--config", str(ROOT / config), *adapt, "--data.init_args.subset=100", "--model.augment=null"])
    assert fit["data"]["class_path"] == "gan_lightning.data.DigitsDataModule" and fit["data"]["init_args"]["subset"] == 100
    assert fit["data"]["init_args"]["num_workers"] == 0 and fit["trainer"]["max_steps"] == 1500
    assert fit["model"]["generator"]["init_args"]["width"] == 64 and fit["model"]["discriminator"]["init_args"]["channels"] == 1


def test_stacked_digits_mgan_config_sweeps_its_own_experiment(tmp_path, monkeypatch):
    import gan_lightning.commands.sweep as sweep_module
    import gan_lightning.metrics.digits_classifier as digits_classifier

    bench = _script("benchmark_stacked_digits")
    assert set(bench.EXPERIMENTS) <= set(bench.CONFIGS) and "mgan" in bench.EXPERIMENTS
    assert all((ROOT / path).is_file() for path in bench.EXPERIMENTS.values())
    swept = {}

    def fake_sweep(config, seeds, name, root, jobs, fit_options):  # records what would run, trains nothing
        swept[name] = config
        (tmp_path / name).mkdir()
        runs = [{"seed": int(s), "step": 5000, "cpu_s": 1.0, "wall_s": 1.0, "status": "finished",
                 "metrics": {"modes_captured": 900.0, "reverse_kl": 0.5}} for s in seeds.split(",")]
        (tmp_path / name / "report.json").write_text(json.dumps({"runs": runs}))
        return tmp_path / name

    monkeypatch.setattr(sweep_module, "sweep", fake_sweep)
    monkeypatch.setattr(digits_classifier, "load_digits_classifier", lambda seed: SimpleNamespace(info={"heldout_accuracy": 0.97}))
    for config in ("mgan", "dcgan"):
        rows = bench.run_config(config, [0, 1], None, 1, str(tmp_path), bench.EXPERIMENT, ())
        assert [r["seed"] for r in rows] == [0, 1] and rows[0]["config"] == config
    assert swept == {"mgan": str(ROOT / "experiments/dcgan_stacked_digits_mgan.yaml"),
                     "dcgan": str(ROOT / "experiments/dcgan_stacked_digits.yaml")}


@pytest.mark.slow  # a CLI fit (~7 s)
def test_discriminator_overfitting_script_scores_kept_checkpoints(tmp_path):
    from conftest import run_cli

    script = _script("discriminator_overfitting")
    run = tmp_path / "subset=64,augment=null" / "seed_0"
    fit = run_cli(
        "fit", "--config", str(ROOT / "experiments/default.yaml"), "--data.init_args.subset=64", "--data.init_args.image_size=8",
        "--model.generator.init_args.image_size=8", "--model.discriminator.init_args.image_size=8",
        "--model.generator.init_args.width=8", "--model.discriminator.init_args.width=8", "--trainer.max_steps=4",
        "--trainer.logger=false", f"--trainer.default_root_dir={run}", "--trainer.enable_progress_bar=false",
        "--trainer.callbacks=[]", "--trainer.callbacks+=gan_lightning.callbacks.GANCheckpoint",
        "--trainer.callbacks.every_n_train_steps=2", "--trainer.callbacks.save_top_k=-1", cwd=tmp_path,
    )
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert script.run_dirs([str(tmp_path)]) == [run]
    by_step = script.measure_run(run, subset=64, num_images=50, every=4, batch_size=32)
    assert list(by_step) == [4] and -10 < by_step[4]["holdout_position"] < 10  # step 2 is not a multiple of 4
    assert 0 <= by_step[4]["acc_holdout_real"] <= 1
    lines = script.table({str(run): by_step}).splitlines()
    assert lines[0] == "| runs | value | step 4 | seeds |"
    assert lines[2].startswith("| subset=64,augment=null | held-out position | ") and lines[2].endswith(" ± 0.00 | 1 |")
    with pytest.raises(SystemExit, match="No run directories with checkpoints/"):
        script.run_dirs([str(tmp_path / "nothing")])
