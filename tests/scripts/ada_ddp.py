"""Two CPU processes (gloo, gan_ddp) with adaptive ADA and a discriminator that disagrees between the ranks.

Rank 0's stand-in discriminator scores every image positive, rank 1's negative: each rank alone would move p
in the opposite direction (r_t = +1 and -1); with the signs summed over both ranks, r_t = 0 < target and p goes
down on both. Each rank saves its state_dict to ``--out``/rank{r}.pt.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from lightning.pytorch import Callback, Trainer, seed_everything
from torch import nn

from gan_lightning import ADA, GANModule
from gan_lightning.data import DigitsDataModule


class TinyImageGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.latent_dim = 4
        self.net = nn.Linear(4, 64)

    def forward(self, z):
        return torch.tanh(self.net(z)).view(-1, 1, 8, 8)


class RankBiasedCritic(nn.Module):
    """A small learned score plus a large per-rank offset (a plain attribute: DDP broadcasts buffers from rank 0)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(0.01))
        self.offset = 0.0

    def forward(self, x):
        return self.weight * x.flatten(1).mean(dim=1) + self.offset


class SetOffset(Callback):
    def on_fit_start(self, trainer, pl_module):
        pl_module.discriminator.offset = 3.0 if trainer.global_rank == 0 else -3.0


def main(out: str, steps: int = 8) -> None:
    seed_everything(0)
    model = GANModule(TinyImageGenerator(), RankBiasedCritic(), augment=ADA(p=0.5, speed_images=1000, transforms="bg"))
    trainer = Trainer(
        accelerator="cpu", devices=2, strategy="gan_ddp", max_steps=steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[SetOffset()],
    )
    trainer.fit(model, DigitsDataModule(image_size=8, batch_size=16))
    Path(out).mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, Path(out) / f"rank{trainer.global_rank}.pt")
    if dist.is_initialized():
        dist.barrier()


if __name__ == "__main__":
    from jsonargparse import CLI

    CLI(main, as_positional=False)
