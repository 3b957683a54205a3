"""Framework overhead: generator steps/s of GANModule + Lightning vs a hand-written PyTorch loop.

Both run in this process, alternating, with the same networks, loss, optimizers, batch size, in-memory data
and number of generator steps; the framework run has the shipped experiments' defaults on (TensorBoard
logging every 50 steps, GANCheckpoint at the end, GANProgressBar refreshed every 25 steps; ``--progress_bar lightning``
for Lightning's TQDMProgressBar instead). Prints the median over the repeats.

    python scripts/benchmark_overhead.py --case mlp_ring8 --steps 2000 --repeats 5
    python scripts/benchmark_overhead.py --case dcgan32 --steps 100 --repeats 3
    python scripts/benchmark_overhead.py --case mlp_ring8 --compile true   # both sides through torch.compile

With ``--compile``, both sides compile G and D (``GANModule(compile_networks=True)`` vs ``torch.compile`` in
the plain loop), and the first ``--warmup`` steps (compilation) are left out of both timings.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Literal

import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from gan_lightning import GANCheckpoint, GANModule, GANProgressBar
from gan_lightning.data import DigitsDataModule, GaussianMixtureDataModule
from gan_lightning.losses import NonSaturatingLoss
from gan_lightning.module import default_optimizer
from gan_lightning.networks import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator


def _networks(case: str):
    if case == "mlp_ring8":
        return MLPGenerator(2, 2, [400] * 4), MLPDiscriminator(2, [200] * 3), GaussianMixtureDataModule("ring8", 100_000, batch_size=100)
    return DCGANGenerator(100, 32, 1, 64), DCGANDiscriminator(32, 1, 64), DigitsDataModule(32, 1, batch_size=64)


def plain_loop(case: str, steps: int, compile: bool = False, warmup: int = 0) -> float:
    """The loop people write by hand: D step on detached fakes, then G step with D frozen."""
    seed_everything(0)
    generator, discriminator, data = _networks(case)
    real_data = data.train_dataset.tensors[0]
    batch = data.batch_size
    loss = NonSaturatingLoss()
    opt_g, opt_d = default_optimizer(generator.parameters()), default_optimizer(discriminator.parameters())
    latent_dim = generator.latent_dim
    if compile:
        generator, discriminator = torch.compile(generator), torch.compile(discriminator)
    start = time.perf_counter()
    perm, pos = torch.randperm(len(real_data)), 0
    for step in range(steps + warmup):
        if step == warmup:
            start = time.perf_counter()
        if pos + batch > len(real_data):
            perm, pos = torch.randperm(len(real_data)), 0
        real = real_data[perm[pos:pos + batch]]
        pos += batch
        with torch.no_grad():
            fake = generator(torch.randn(batch, latent_dim))
        d_loss = loss.discriminator_loss(discriminator(real), discriminator(fake))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        for p in discriminator.parameters():
            p.requires_grad_(False)
        g_loss = loss.generator_loss(discriminator(generator(torch.randn(batch, latent_dim))))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        for p in discriminator.parameters():
            p.requires_grad_(True)
    return steps / (time.perf_counter() - start)


class _LoopClock(Callback):
    """Times the training loop alone (Trainer set-up and teardown are a one-off cost, reported apart)."""

    def __init__(self, warmup: int = 0):
        self.warmup = warmup

    def on_train_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.warmup and trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.start


def framework(case: str, steps: int, compile: bool = False, warmup: int = 0, progress_bar: str = "gan") -> tuple[float, float]:
    seed_everything(0)
    generator, discriminator, data = _networks(case)
    model = GANModule(generator, discriminator, loss="nonsaturating", compile_networks=compile)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            accelerator="cpu", devices=1, max_steps=steps + warmup, log_every_n_steps=50, enable_model_summary=False,
            logger=TensorBoardLogger(tmp, name="bench"),
            callbacks=[
                GANCheckpoint(every_n_train_steps=10**9, save_last=True),
                GANProgressBar(refresh_rate=25) if progress_bar == "gan" else TQDMProgressBar(refresh_rate=25),
                clock := _LoopClock(warmup),
            ],
        )
        data.setup()
        start = time.perf_counter()
        trainer.fit(model, data)
        elapsed = time.perf_counter() - start
    return steps / clock.seconds, (steps + warmup) / elapsed


def main(
    case: Literal["mlp_ring8", "dcgan32"] = "mlp_ring8",
    steps: int = 2000,
    repeats: int = 5,
    threads: int = 0,
    compile: bool = False,
    warmup: int | None = None,
    progress_bar: Literal["gan", "lightning"] = "gan",
) -> None:
    if threads:
        torch.set_num_threads(threads)
    warmup = (20 if compile else 0) if warmup is None else warmup
    plain, loop, whole = [], [], []
    for _ in range(repeats):
        plain.append(plain_loop(case, steps, compile, warmup))
        loop_rate, whole_rate = framework(case, steps, compile, warmup, progress_bar)
        loop.append(loop_rate)
        whole.append(whole_rate)
    med = statistics.median
    print(f"case={case} steps={steps} repeats={repeats} threads={torch.get_num_threads()} compile={compile} warmup={warmup} "
          f"progress_bar={progress_bar}")
    print(f"plain loop                 : {med(plain):8.1f} generator steps/s")
    print(f"gan_lightning, loop only   : {med(loop):8.1f} generator steps/s   ratio {med([a / b for a, b in zip(loop, plain)]):.3f}")
    print(f"gan_lightning, incl. set-up: {med(whole):8.1f} generator steps/s   ratio {med([a / b for a, b in zip(whole, plain)]):.3f}")


if __name__ == "__main__":
    from jsonargparse import CLI

    CLI(main, as_positional=False)
