"""The GANEvaluation callback in training and the ``evaluate`` command on checkpoints."""

import csv
import json
import math
import re

import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from gan_lightning.callbacks import GANCheckpoint, GANEvaluation
from gan_lightning.commands.cli import main
from gan_lightning.data import DigitsDataModule
from gan_lightning.metrics import save_module_file
from gan_lightning.networks import DCGANDiscriminator, DCGANGenerator

from conftest import ROOT, quiet_trainer, tiny_gan, tiny_ring


class TinyFeatures(nn.Module):
    """A fixed small conv net standing in for a domain classifier (the pluggable-extractor path, fast on CPU)."""

    def __init__(self, channels: int = 1):
        super().__init__()
        torch.manual_seed(123)
        self.conv = nn.Sequential(nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        feats = self.conv(x).mean(dim=(2, 3))
        return feats, self.head(feats)


def _logged(csv_dir, key):
    rows = list(csv.DictReader(open(next(csv_dir.rglob("metrics.csv")))))
    return {int(r["step"]): float(r[key]) for r in rows if r.get(key)}


def test_callback_on_toy_data_logs_records_and_drives_checkpoint(tmp_path):
    evaluation = GANEvaluation(every_n_steps=2, num_samples=300, record_dir=str(tmp_path / "records"))
    checkpoint = GANCheckpoint(dirpath=tmp_path / "ckpt", monitor="high_quality_percent", mode="max",
                               every_n_train_steps=2, save_top_k=1, filename="best-{step}")
    trainer = quiet_trainer(max_steps=5, callbacks=[checkpoint, evaluation], enable_checkpointing=True,  # checkpoint first on purpose
                            logger=CSVLogger(tmp_path / "logs"), log_every_n_steps=50)
    trainer.fit(tiny_gan(), tiny_ring())

    records = sorted((tmp_path / "records").glob("step_*.json"))
    assert [r.name for r in records] == ["step_000000002.json", "step_000000004.json", "step_000000005.json"]  # + end of fit
    record = json.loads(records[0].read_text())
    assert set(record["scores"]) == {"modes_captured", "high_quality_percent", "reverse_kl"}
    protocol = record["protocol"]
    assert protocol["step"] == 2 and protocol["num_fake"] == 300 and protocol["generator"] == "raw"
    assert protocol["reference"] == {"type": "mixture", "name": "ring8", "num_modes": 8, "std": 0.01}

    # logger x-axis = generator steps, even though log_every_n_steps never fires
    assert sorted(_logged(tmp_path / "logs", "modes_captured")) == [2, 4, 5]
    # Lightning ran the checkpoint after the evaluation, so the monitored score was there at steps 2 and 4
    assert checkpoint.best_model_path and "step=" in checkpoint.best_model_path
    assert checkpoint.best_model_score is not None
    # nothing of the evaluation went into the model checkpoint; the callback state is two plain values
    ckpt = torch.load(checkpoint.best_model_path, weights_only=True)
    assert all(k.startswith(("generator.", "discriminator.")) for k in ckpt["state_dict"])
    states = [v for k, v in ckpt["callbacks"].items() if k.startswith("GANEvaluation")]
    assert states and set(states[0]) == {"last_step", "last_scores"}


def test_scores_are_only_visible_at_their_own_step(tmp_path):
    evaluation = GANEvaluation(every_n_steps=2, num_samples=100, evaluate_at_end=False, record_dir=str(tmp_path))
    seen = {}

    class Spy(GANCheckpoint):  # sees callback_metrics exactly when a checkpoint callback would
        def on_train_batch_end(self, trainer, *args):
            seen[trainer.global_step] = "reverse_kl" in trainer.callback_metrics

    trainer = quiet_trainer(max_steps=4, callbacks=[Spy(dirpath=tmp_path), evaluation], enable_checkpointing=True)
    trainer.fit(tiny_gan(), tiny_ring())
    assert seen == {1: False, 2: True, 3: False, 4: True}


def _digits_gan():
    from gan_lightning import GANModule

    torch.manual_seed(0)
    return GANModule(DCGANGenerator(latent_dim=8, image_size=16, channels=1, width=8),
                     DCGANDiscriminator(image_size=16, channels=1, width=8))


def test_callback_on_images_with_custom_extractor_and_mixed_precision(tmp_path):
    """Image metrics during training, under bf16 autocast: the scores match a float32 evaluation of the same weights."""
    evaluation = GANEvaluation(every_n_steps=0, num_samples=64, num_real=96, feature_extractor=TinyFeatures(),
                               cache_dir=str(tmp_path / "cache"), record_dir=str(tmp_path / "records"))
    model = _digits_gan()
    trainer = quiet_trainer(max_steps=2, precision="bf16-mixed", callbacks=[evaluation])
    trainer.fit(model, DigitsDataModule(image_size=16, channels=1, batch_size=32))
    scores = evaluation.last_scores
    assert set(scores) == {"fid", "is", "is_std", "kid", "kid_std", "precision", "recall"}
    assert scores["fid"] > 0 and math.isfinite(scores["fid"])
    record = json.loads(next((tmp_path / "records").glob("*.json")).read_text())
    assert record["protocol"]["reference"]["class_path"] == "gan_lightning.data.digits.DigitsDataModule"
    assert record["protocol"]["reference"]["init_args"] == {"image_size": 16, "channels": 1, "seed": 0, "subset": None, "subset_seed": 0,
                                                               "held_out": False}
    assert record["protocol"]["num_real"] == 96 and record["protocol"]["image_conversion"].startswith("uint8")

    again, _ = evaluation.evaluator.evaluate(model.generator, model.sample_latent)  # float32, outside training
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast is switched off inside
        under_autocast, _ = evaluation.evaluator.evaluate(model.generator, model.sample_latent)
    assert again == scores == under_autocast


def test_ema_generator_is_used_when_present(tmp_path):
    model = tiny_gan()
    model.generator_ema = nn.Sequential(nn.Linear(2, 2))  # a stand-in EMA network
    with torch.no_grad():
        model.generator_ema[0].weight.zero_()
        model.generator_ema[0].bias.copy_(torch.tensor([1.0, 0.0]))  # every sample on mode 0
    evaluation = GANEvaluation(every_n_steps=0, num_samples=100, record_dir=str(tmp_path))
    quiet_trainer(max_steps=1, callbacks=[evaluation]).fit(model, tiny_ring())
    assert evaluation.last_record["protocol"]["generator"] == "ema"
    assert evaluation.last_scores["modes_captured"] == 1 and evaluation.last_scores["high_quality_percent"] == 100


def test_evaluate_command_on_toy_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", str(ROOT / "experiments/ring8.yaml"), "--trainer.max_steps=3",
                 "--trainer.logger=false", "--trainer.callbacks=[]", "--trainer.enable_progress_bar=false",
                 "--trainer.default_root_dir", str(tmp_path),
                 "--model.generator.init_args.hidden_dims=[16,16]", "--model.discriminator.init_args.hidden_dims=[16]",
                 "--data.init_args.num_samples=1000"]) == 0
    ckpt = next(tmp_path.rglob("*.ckpt"))
    capsys.readouterr()
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--ckpt_path", str(ckpt), "--reference", "ring8", "--num_samples", "500",
                 "--output", str(out), "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    record = json.loads(out.read_text())
    assert "modes_captured" in printed and set(record["scores"]) == {"modes_captured", "high_quality_percent", "reverse_kl"}
    assert record["protocol"]["num_fake"] == 500 and record["protocol"]["seed"] == 3
    assert record["protocol"]["checkpoint"] == str(ckpt) and record["protocol"]["generator"] == "raw"


def test_evaluate_command_on_image_checkpoint_reads_the_run_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--trainer.max_steps=2",
                 "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
                 "--model.generator.init_args.width=8", "--model.discriminator.init_args.width=8",
                 "--model.generator.init_args.image_size=16", "--model.discriminator.init_args.image_size=16",
                 "--data.init_args.image_size=16"]) == 0
    ckpt = next((tmp_path / "runs").rglob("last.ckpt"))
    extractor = tmp_path / "features.pt"
    save_module_file(TinyFeatures(), extractor)  # class path test_evaluation.TinyFeatures: trusted by the option below
    capsys.readouterr()
    args = ["evaluate", "--ckpt_path", str(ckpt), "--num_samples", "64", "--num_real", "80",
            "--feature_extractor", str(extractor), "--cache_dir", str(tmp_path / "cache"), "--trusted_modules", "test_evaluation"]
    assert main(args) == 0
    # progress on stderr, phase by phase with its count and time, then the scores (stdout keeps the JSON record)
    err = capsys.readouterr().err
    phases = ["loading real images 80/80", "features of real images 80/80", "generating samples 64/64",
              "features of generated samples 64/64", "scores 4/4"]
    assert all(re.search(f"^evaluate last.ckpt: {phase} in \\d+\\.\\d s$", err, re.M) for phase in phases), err
    assert re.search(r"^evaluate last.ckpt: done in \d+\.\d s: fid=\S+ is=\S+ is_std=\S+ kid=", err, re.M)
    record = json.loads(ckpt.with_suffix(".eval.json").read_text())
    assert record["protocol"]["reference"]["class_path"].endswith("DigitsDataModule")  # from <run>/config.yaml
    assert record["protocol"]["feature_extractor"]["name"] == str(extractor)
    assert record["protocol"]["real_features"].startswith("computed")
    assert main(args) == 0  # second time: real features from the disk cache, same scores
    err = capsys.readouterr().err
    assert "evaluate last.ckpt: real features from the disk cache" in err and "features of real images" not in err
    again = json.loads(ckpt.with_suffix(".eval.json").read_text())
    assert again["protocol"]["real_features"].startswith("disk cache") and again["scores"] == record["scores"]
    # the cached features file is itself a reference
    cached = next((tmp_path / "cache").glob("real-*.pt"))
    assert main([*args, "--reference", str(cached), "--output", str(tmp_path / "from_file.json")]) == 0
    assert json.loads((tmp_path / "from_file.json").read_text())["scores"] == record["scores"]


def test_evaluate_command_errors_are_clear(tmp_path, capsys):
    assert main(["evaluate", "--ckpt_path", str(tmp_path / "nope.ckpt")]) == 2
    assert "does not exist" in capsys.readouterr().err
