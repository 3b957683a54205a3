"""Count the gradient elements DDP all-reduces per generator iteration (2 CPU processes, gloo).

    python scripts/ddp_comm_count.py --strategy ddp_find_unused_parameters_true   # Lightning's single wrapper
    python scripts/ddp_comm_count.py --strategy gan_ddp                           # G and D wrapped separately

A communication hook on every DDP wrapper adds up the bucket sizes it all-reduces. Each rank also saves its
parameters (``--out DIR``) so tests can check that the ranks agree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from lightning.pytorch import Callback, Trainer, seed_everything
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from gan_lightning import GANModule
from gan_lightning.data import GaussianMixtureDataModule
from gan_lightning.networks import MLPDiscriminator, MLPGenerator


class CountAllReduce(Callback):
    """Registers a counting all-reduce hook on each DDP wrapper before the first backward."""

    def __init__(self) -> None:
        self.state = {"elements": 0}

    def on_train_start(self, trainer, pl_module) -> None:
        wrappers = [m for m in [trainer.strategy.model, *getattr(pl_module, "_distributed", {}).values()] if isinstance(m, DistributedDataParallel)]
        for wrapper in wrappers:
            wrapper.register_comm_hook(self.state, _counting_allreduce)


def _counting_allreduce(state, bucket):
    state["elements"] += bucket.buffer().numel()
    return default_hooks.allreduce_hook(None, bucket)


def main(strategy: str = "gan_ddp", loss: str = "nonsaturating", n_critic: int = 2, steps: int = 6, out: Optional[str] = None) -> dict:
    seed_everything(0)
    model = GANModule(
        MLPGenerator(latent_dim=2, output_dim=2, hidden_dims=[16, 16], batch_norm=False),
        MLPDiscriminator(input_dim=2, hidden_dims=[16, 16]),
        loss=loss,
        n_critic=n_critic,
    )
    counter = CountAllReduce()
    trainer = Trainer(
        accelerator="cpu", devices=2, strategy=strategy, max_steps=steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[counter],
    )
    trainer.fit(model, GaussianMixtureDataModule("ring8", num_samples=800, batch_size=20))
    g = sum(p.numel() for p in model.generator.parameters())
    d = sum(p.numel() for p in model.discriminator.parameters())
    result = {
        "strategy": strategy, "loss": loss, "n_critic": n_critic, "generator_steps": trainer.global_step,
        "elements_per_generator_step": counter.state["elements"] / max(trainer.global_step, 1),
        "generator_parameters": g, "discriminator_parameters": d, "rank": trainer.global_rank,
    }
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, Path(out) / f"rank{trainer.global_rank}.pt")
        (Path(out) / f"rank{trainer.global_rank}.json").write_text(json.dumps(result))
    if trainer.global_rank == 0:
        print(json.dumps(result))
    if dist.is_initialized():
        dist.barrier()
    return result


if __name__ == "__main__":
    from jsonargparse import CLI

    CLI(main, as_positional=False)
