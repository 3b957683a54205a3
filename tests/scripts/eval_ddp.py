"""DDP check of GANEvaluation: ``python eval_ddp.py OUT ddp`` trains 2 steps on 2 CPU processes (gloo) and scores the
generator with samples split across ranks; ``python eval_ddp.py OUT single`` scores the saved generator in one
process. Run as a script because Lightning's ``ddp`` launcher re-runs ``sys.argv`` (it cannot start from pytest)."""

import json
import sys
from pathlib import Path

import torch
from torch import nn

from gan_lightning import GANModule
from gan_lightning.callbacks import GANEvaluation
from gan_lightning.data import DigitsDataModule
from gan_lightning.metrics import GeneratorEvaluator, reference_from_datamodule
from gan_lightning.networks import DCGANDiscriminator, DCGANGenerator

NUM_SAMPLES, NUM_REAL = 51, 70  # odd: the two ranks get 26 and 25 samples


class TinyFeatures(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(123)
        self.conv = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        feats = self.conv(x).mean(dim=(2, 3))
        return feats, self.head(feats)


def build():
    torch.manual_seed(0)
    model = GANModule(DCGANGenerator(latent_dim=8, image_size=16, channels=1, width=8), DCGANDiscriminator(image_size=16, channels=1, width=8))
    return model, DigitsDataModule(image_size=16, channels=1, batch_size=32)


def main(out: Path, mode: str) -> None:
    from lightning.pytorch import Trainer

    model, data = build()
    if mode == "ddp":
        evaluation = GANEvaluation(every_n_steps=0, num_samples=NUM_SAMPLES, num_real=NUM_REAL, feature_extractor=TinyFeatures(),
                                   cache_dir=str(out / "cache"), record_dir=str(out / "records"), show_progress_after=0)
        trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp_find_unused_parameters_true", max_steps=2, logger=False,
                          enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[evaluation])
        trainer.fit(model, data)
        (out / f"scores_rank{trainer.global_rank}.json").write_text(json.dumps(evaluation.last_scores))
        if trainer.global_rank == 0:
            torch.save(model.generator.state_dict(), out / "generator.pt")
    else:
        model.generator.load_state_dict(torch.load(out / "generator.pt"))
        evaluator = GeneratorEvaluator(reference_from_datamodule(data), NUM_SAMPLES, num_real=NUM_REAL,
                                       feature_extractor=TinyFeatures(), cache=False)
        scores, _ = evaluator.evaluate(model.generator, model.sample_latent)
        (out / "scores_single.json").write_text(json.dumps(scores))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
