"""Two CPU processes (gloo) with LeCam and a discriminator whose scores differ between the ranks.

Rank 0's stand-in discriminator adds +3 to every score, rank 1's -3: each rank alone would keep anchors near +3
and -3; with the batch means averaged over both ranks, both keep the same anchors, near 0. Each rank saves its
state_dict to ``--out``/rank{r}.pt.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from lightning.pytorch import Trainer, seed_everything

from ada_ddp import RankBiasedCritic, SetOffset, TinyImageGenerator
from gan_lightning import GANModule
from gan_lightning.data import DigitsDataModule
from gan_lightning.regularizers import LeCamRegularizer


def main(out: str, strategy: str = "gan_ddp", steps: int = 4) -> None:
    seed_everything(0)
    model = GANModule(TinyImageGenerator(), RankBiasedCritic(), regularizers=[LeCamRegularizer()])
    trainer = Trainer(
        accelerator="cpu", devices=2, strategy=strategy, max_steps=steps, logger=False, enable_checkpointing=False,
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
