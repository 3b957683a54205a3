"""Train the same GAN on 1 process with batch 2B and on 2 processes (gan_ddp) with batch B each.

Latents are made a function of the call index (the global 2B batch, split between the ranks), so both runs
see the same real and fake samples per update; what remains different is only the order of float additions
(per-rank means averaged by all-reduce vs. one mean over 2B).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
from lightning.pytorch import Trainer, seed_everything

from gan_lightning import GANModule
from gan_lightning.data import GaussianMixtureDataModule
from gan_lightning.networks import MLPDiscriminator, MLPGenerator

B = 16


def main(devices: int, out: str, steps: int = 10) -> None:
    seed_everything(0)
    model = GANModule(
        MLPGenerator(latent_dim=2, output_dim=2, hidden_dims=[32, 32], batch_norm=False),
        MLPDiscriminator(input_dim=2, hidden_dims=[32, 32]),
        n_critic=2,
    )
    calls = itertools.count()
    original = model.sample_latent

    def global_latents(n, generator=None):
        if generator is not None:  # the one-off shape check
            return original(n, generator)
        z = torch.randn(2 * B, 2, generator=torch.Generator().manual_seed(1000 + next(calls)))
        if model.trainer.world_size == 2:
            rank = model.trainer.global_rank
            z = z[rank * B:(rank + 1) * B]
        return z.to(model.device)

    model.sample_latent = global_latents
    trainer = Trainer(
        accelerator="cpu", devices=devices, strategy="gan_ddp" if devices == 2 else "auto", max_steps=steps,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    data = GaussianMixtureDataModule("ring8", num_samples=1280, batch_size=B * (2 // devices))
    trainer.fit(model, data)
    if trainer.global_rank == 0:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, Path(out) / f"devices{devices}.pt")


if __name__ == "__main__":
    from jsonargparse import CLI

    CLI(main, as_positional=False)
