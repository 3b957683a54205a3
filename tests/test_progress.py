"""What a user sees while a run trains or evaluates: the progress bar in generator steps, the ``--intervals.*``
options, and the progress of evaluations."""

import re

import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning import GANModule
from gan_lightning.callbacks import GANCheckpoint, GANEvaluation, GANProgressBar, ModeCollapseMonitor, SampleGridCallback
from gan_lightning.commands.cli import GANLightningCLI, main
from gan_lightning.data import GaussianMixtureDataModule
from gan_lightning.errors import ConfigurationError
from gan_lightning.metrics import distributed as D
from gan_lightning.metrics.progress import EvaluationProgress
from gan_lightning.networks import MLPDiscriminator, MLPGenerator

from conftest import ROOT, quiet_trainer, run_cli, tiny_gan, tiny_ring

pytestmark = pytest.mark.filterwarnings("ignore:.*LightningCLI's args parameter")  # GANLightningCLI(args=...) under pytest

EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml"))
LINE = re.compile(r"^generator step (\d+)/(\d+) \(\d+%\) \| .*d_loss=(\S+) g_loss=(\S+) (?:\S+ )*epoch=(\d+)$")


def _lines(out: str) -> list[re.Match]:
    return [m for m in map(LINE.match, out.splitlines()) if m]


@pytest.fixture
def host_syncs(monkeypatch):
    """Counts the tensor-to-Python conversions (each a host sync on an accelerator) made from now on."""
    calls = []
    for name in ("item", "tolist", "__float__", "__bool__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            calls.append(1)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


# ---------------------------------------------------------------------------------------------------- progress bar
def test_bar_counts_generator_steps_and_reads_losses_only_on_refresh_steps(host_syncs, capsys):
    reads = []

    class Spy(GANProgressBar):
        def on_train_batch_end(self, trainer, *args):
            before = len(host_syncs)
            super().on_train_batch_end(trainer, *args)
            if len(host_syncs) > before:
                reads.append(trainer.global_step)

    model = tiny_gan()
    trainer = quiet_trainer(max_steps=45, log_every_n_steps=1000, enable_progress_bar=True,
                            callbacks=[Spy(refresh_rate=10, style="lines", line_interval=0)])
    trainer.fit(model, tiny_ring())  # 20 generator steps per epoch
    assert reads == [10, 20, 30, 40, 45]  # no host sync on the other 40 steps
    lines = _lines(capsys.readouterr().out)
    assert [(int(m[1]), int(m[2])) for m in lines] == [(10, 45), (20, 45), (30, 45), (40, 45), (45, 45)]
    assert [int(m[5]) for m in lines] == [0, 0, 1, 1, 2]  # the epoch of the step, not Lightning's count after the stop
    last = model.last_step_outputs
    assert float(lines[-1][3]) == pytest.approx(last.d_loss.item(), rel=1e-3)
    assert float(lines[-1][4]) == pytest.approx(last.g_loss.item(), rel=1e-3)


def test_total_is_max_epochs_times_generator_steps_per_epoch(capsys):
    # n_critic=2: each generator step takes 2 real batches, so an epoch of 20 batches has 10 generator steps
    trainer = quiet_trainer(max_epochs=2, enable_progress_bar=True, callbacks=[GANProgressBar(refresh_rate=5, style="lines", line_interval=0)])
    trainer.fit(tiny_gan(n_critic=2), tiny_ring())
    lines = _lines(capsys.readouterr().out)
    assert [(int(m[1]), int(m[2])) for m in lines] == [(5, 20), (10, 20), (15, 20), (20, 20)]


def test_lines_in_logs_are_rate_limited(capsys):
    bar = GANProgressBar(refresh_rate=1, style="lines", line_interval=3600)
    quiet_trainer(max_steps=30, enable_progress_bar=True, callbacks=[bar]).fit(tiny_gan(), tiny_ring())
    out = capsys.readouterr().out
    assert [int(m[1]) for m in _lines(out)] == [1, 30]  # the first update and the end; nothing in between
    assert "\r" not in out


def test_auto_style_prints_lines_when_the_output_is_not_a_terminal(capsys):
    bar = GANProgressBar(refresh_rate=10)  # pytest's captured stdout is not a terminal
    quiet_trainer(max_steps=20, enable_progress_bar=True, callbacks=[bar]).fit(tiny_gan(), tiny_ring())
    assert bar.uses_lines and "\r" not in capsys.readouterr().out


def test_bar_style_is_one_bar_over_the_whole_run(capsys):
    bar = GANProgressBar(refresh_rate=10, style="bar")
    quiet_trainer(max_steps=45, enable_progress_bar=True, callbacks=[bar]).fit(tiny_gan(), tiny_ring())
    frames = [f.strip() for f in capsys.readouterr().out.split("\r") if f.strip()]
    assert frames[0].startswith("generator step 0/45")
    counts = [f.split()[2] for f in frames if f.startswith("generator step")]
    counts = [c for i, c in enumerate(counts) if i == 0 or c != counts[i - 1]]  # (closing the bar redraws it once)
    assert counts == ["0/45", "10/45", "20/45", "30/45", "40/45", "45/45"]
    assert "d_loss=" in frames[-1] and "g_loss=" in frames[-1] and "steps/s" in frames[-1]


def test_resumed_run_continues_the_count(tmp_path, capsys):
    checkpoint = GANCheckpoint(dirpath=tmp_path, every_n_train_steps=10)
    quiet_trainer(max_steps=10, callbacks=[checkpoint], enable_checkpointing=True).fit(tiny_gan(), tiny_ring())
    bar = GANProgressBar(refresh_rate=5, style="lines", line_interval=0)
    trainer = quiet_trainer(max_steps=20, enable_progress_bar=True, callbacks=[bar])
    trainer.fit(tiny_gan(), tiny_ring(), ckpt_path=checkpoint.last_model_path or checkpoint.best_model_path)
    assert [int(m[1]) for m in _lines(capsys.readouterr().out)] == [15, 20]


class WithValidation(GANModule):
    """A GANModule with a validation loop, which logs a score to the progress bar."""

    def validation_step(self, batch, batch_idx):
        self.log("val_score", self.discriminator(batch[0]).mean(), prog_bar=True)


class RingWithValidation(GaussianMixtureDataModule):
    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(64, 2, generator=torch.Generator().manual_seed(0))), batch_size=16)


@pytest.mark.parametrize("style", ["lines", "bar"])
def test_validation_and_evaluation_during_training(style, tmp_path, capsys):
    torch.manual_seed(0)
    model = WithValidation(MLPGenerator(latent_dim=2, output_dim=2, hidden_dims=[16]), MLPDiscriminator(input_dim=2, hidden_dims=[16]))
    evaluation = GANEvaluation(every_n_steps=10, num_samples=200, record_dir=str(tmp_path), show_progress_after=0)
    bar = GANProgressBar(refresh_rate=10, style=style, line_interval=0)
    trainer = quiet_trainer(max_steps=30, val_check_interval=10, enable_progress_bar=True, callbacks=[evaluation, bar])
    trainer.fit(model, RingWithValidation("ring8", num_samples=640, batch_size=32))
    captured = capsys.readouterr()
    if style == "lines":
        lines = _lines(captured.out)
        assert [int(m[1]) for m in lines] == [10, 20, 30] and "\r" not in captured.out
        assert "val_score=" in lines[-1].string  # the module's prog_bar metric, after a validation
        assert captured.out.count("Validation done in") == 3
    else:
        frames = [f.strip() for f in captured.out.split("\r") if f.strip().startswith("generator step")]
        assert frames[-1].startswith("generator step 30/30") and "val_score=" in frames[-1]
    # the evaluations report on stderr, one summary line each (steps 10, 20, 30)
    assert [int(s) for s in re.findall(r"GANEvaluation at generator step (\d+): done in", captured.err)] == [10, 20, 30]


# ---------------------------------------------------------------------------------------------------- the CLI
def test_fit_without_a_configured_bar_gets_the_gan_bar_and_enable_progress_bar_false_removes_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ring8 = str(ROOT / "experiments/ring8.yaml")
    cli = GANLightningCLI(args=["--config", ring8, "--trainer.callbacks=[]", "--trainer.logger=false"], run=False)
    assert isinstance(cli.trainer.progress_bar_callback, GANProgressBar)
    # every shipped experiment configures a bar; Lightning alone would refuse it with enable_progress_bar=false
    cli = GANLightningCLI(args=["--config", ring8, "--trainer.enable_progress_bar=false"], run=False)
    assert cli.trainer.progress_bar_callback is None


INTERVAL_OF = {  # option -> (callback class, attribute holding the interval)
    "samples": (SampleGridCallback, "every_n_steps"),
    "evaluation": (GANEvaluation, "every_n_steps"),
    "checkpoint": (GANCheckpoint, "_every_n_train_steps"),
    "collapse": (ModeCollapseMonitor, "every_n_steps"),
}


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: p.stem)
def test_intervals_reach_the_callbacks_of_every_shipped_experiment(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    classes = {entry["class_path"].rpartition(".")[2] for entry in yaml.safe_load(config.read_text())["trainer"]["callbacks"]}
    present = {name for name, (cls, _) in INTERVAL_OF.items() if cls.__name__ in classes}
    assert {"samples", "checkpoint"} <= present  # every shipped experiment has these two
    values = {name: 7 + i for i, name in enumerate(sorted(present))}
    args = ["--config", str(config), *[f"--intervals.{name}={value}" for name, value in values.items()]]
    cli = GANLightningCLI(args=args, run=False)
    for name, value in values.items():
        cls, attribute = INTERVAL_OF[name]
        found = [cb for cb in cli.trainer.callbacks if isinstance(cb, cls)]
        assert found and all(getattr(cb, attribute) == value for cb in found), name
    for name in set(INTERVAL_OF) - present:  # an interval for a callback the experiment lacks: the class to add
        with pytest.raises(ConfigurationError, match=f"no {INTERVAL_OF[name][0].__name__} in trainer.callbacks"):
            GANLightningCLI(args=["--config", str(config), f"--intervals.{name}=5"], run=False)


def test_intervals_from_the_command_line_in_a_tiny_run(tmp_path):
    result = run_cli(
        "fit", "--config", str(ROOT / "experiments/ring8.yaml"), "--trainer.max_steps=4",
        "--intervals.samples", "3", "--intervals.checkpoint", "2", "--intervals.evaluation", "2",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--data.init_args.num_samples=1000",
        "--model.generator.init_args.hidden_dims=[16]", "--model.discriminator.init_args.hidden_dims=[16]",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs/ring8/version_0"
    assert sorted(p.name for p in (run / "samples").glob("step_*.png")) == ["step_000000.png", "step_000003.png", "step_000004.png"]
    assert sorted(p.name for p in (run / "checkpoints").glob("epoch=*.ckpt")) == ["epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt"]
    assert sorted(p.name for p in (run / "evaluation").glob("*.json")) == ["step_000000002.json", "step_000000004.json"]
    # the saved config shows the values the callbacks used, so a resume from it runs the same
    saved = {entry["class_path"].rpartition(".")[2]: entry["init_args"] for entry in
             yaml.safe_load((run / "config.yaml").read_text())["trainer"]["callbacks"]}
    assert saved["SampleGridCallback"]["every_n_steps"] == 3 and saved["GANCheckpoint"]["every_n_train_steps"] == 2
    assert re.search(r"^generator step 4/4 \(100%\)", result.stdout, re.M)


def test_interval_for_a_missing_callback_is_a_one_line_error(tmp_path):
    result = run_cli("fit", "--config", str(ROOT / "experiments/ring8.yaml"), "--intervals.collapse", "250", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error == ["error: --intervals.collapse 250: this config has no ModeCollapseMonitor in trainer.callbacks; add one "
                     "(--trainer.callbacks+=gan_lightning.callbacks.ModeCollapseMonitor) or drop --intervals.collapse."]


def test_interval_below_its_minimum_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", str(ROOT / "experiments/ring8.yaml"), "--intervals.samples", "0"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == "error: --intervals.samples must be >= 1 generator steps, got 0."


# ---------------------------------------------------------------------------------------------------- evaluations
def test_evaluation_progress_lines(capsys):
    progress = EvaluationProgress("evaluate x.ckpt", delay=0, line_interval=0, bars=False)
    with progress.phase("generating samples", 300, "samples") as advance:
        for _ in range(3):
            advance(100)
    progress.finish({"fid": 12.3456})
    err = capsys.readouterr().err.splitlines()
    assert err[:3] == [f"evaluate x.ckpt: generating samples {n}/300 ({p}%), 0 s so far" for n, p in ((100, 33), (200, 67), (300, 100))]
    assert re.fullmatch(r"evaluate x.ckpt: generating samples 300/300 in \d+\.\d s", err[3])
    assert re.fullmatch(r"evaluate x.ckpt: done in \d+\.\d s: fid=12.35", err[4]) and len(err) == 5


def test_evaluation_progress_bars_on_a_terminal(capsys):
    progress = EvaluationProgress("evaluate", delay=0, bars=True)
    with progress.phase("features of generated samples", 64, "samples") as advance:
        advance(32)
        advance(32)
    err = capsys.readouterr().err
    assert "evaluate: features of generated samples:" in err and "64/64" in err and "\r" in err


def test_evaluation_progress_is_quiet_before_the_delay_and_on_other_ranks(capsys, monkeypatch):
    quick = EvaluationProgress("quick", delay=3600, line_interval=0, bars=False)
    with quick.phase("generating samples", 10, "samples") as advance:
        advance(10)
    quick.finish({"fid": 1.0})
    monkeypatch.setattr(D, "rank", lambda: 1)
    other = EvaluationProgress("rank 1", delay=0, line_interval=0, bars=False)
    with other.phase("generating samples", 10, "samples") as advance:
        advance(10)
    other.finish({"fid": 1.0})
    assert capsys.readouterr().err == ""


def test_in_training_evaluation_shows_progress_only_when_it_lasts(tmp_path, capsys):
    shown = GANEvaluation(every_n_steps=2, num_samples=300, record_dir=str(tmp_path), show_progress_after=0)
    quiet_trainer(max_steps=2, callbacks=[shown]).fit(tiny_gan(), tiny_ring())
    err = capsys.readouterr().err
    assert "GANEvaluation at generator step 2: generating samples 300/300 in" in err
    assert re.search(r"GANEvaluation at generator step 2: done in \d+\.\d s: modes_captured=\S+ high_quality_percent=", err)
    default = GANEvaluation(every_n_steps=2, num_samples=300, record_dir=str(tmp_path))  # 5 s: a toy evaluation is silent
    quiet_trainer(max_steps=2, callbacks=[default]).fit(tiny_gan(), tiny_ring())
    assert "GANEvaluation" not in capsys.readouterr().err
