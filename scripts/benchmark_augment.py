"""Cost of discriminator augmentation: seconds per DCGAN-32 training iteration with and without it.

Each round runs the same iteration (one D update on real and detached fake images, one G update through the
frozen D, as GANModule does) for every variant in turn, in this process; the table reports the median time per
iteration over the rounds and its ratio to the run without augmentation measured in the same rounds.

    python scripts/benchmark_augment.py --steps 20 --rounds 5
    python scripts/benchmark_augment.py --device cuda --batch_size 256
"""

from __future__ import annotations

import statistics
import time
from typing import Optional

import torch
import torch.nn.functional as F

from gan_lightning import ADA, DiffAugment
from gan_lightning.data.digits import load_digits_tensor
from gan_lightning.module import default_optimizer
from gan_lightning.networks import DCGANDiscriminator, DCGANGenerator

VARIANTS = {
    "none": lambda: None,
    "diffaugment (color,translation,cutout)": lambda: DiffAugment(),
    "ada bgc, p = 0 (adaptive start)": lambda: ADA(p=0.0),
    "ada bgc, p = 0.5": lambda: ADA(p=0.5, target=None),
}


def _iterations(augment: Optional[torch.nn.Module], steps: int, batch_size: int, device: torch.device) -> float:
    torch.manual_seed(0)
    generator, discriminator = DCGANGenerator(100, 32, 1, 64).to(device), DCGANDiscriminator(32, 1, 64).to(device)
    opt_g, opt_d = default_optimizer(generator.parameters()), default_optimizer(discriminator.parameters())
    real_data = load_digits_tensor(32, 1)[0].to(device)
    aug = augment.to(device) if augment is not None else (lambda x: x)
    start = 0.0
    for step in range(steps + 1):  # the first iteration is a warm-up
        if step == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        real = real_data[torch.randint(len(real_data), (batch_size,), device=device)]
        with torch.no_grad():
            fake = generator(torch.randn(batch_size, 100, device=device))
        real_scores, fake_scores = discriminator(aug(real)), discriminator(aug(fake))
        d_loss = F.softplus(-real_scores).mean() + F.softplus(fake_scores).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        if augment is not None:
            augment.observe(real_scores.detach())
        for p in discriminator.parameters():
            p.requires_grad_(False)
        g_loss = F.softplus(-discriminator(aug(generator(torch.randn(batch_size, 100, device=device))))).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        for p in discriminator.parameters():
            p.requires_grad_(True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main(steps: int = 20, rounds: int = 5, batch_size: int = 64, device: str = "cpu", threads: Optional[int] = None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    ratios: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        this_round = {name: _iterations(make(), steps, batch_size, dev) for name, make in VARIANTS.items()}
        for name, seconds in this_round.items():
            times[name].append(seconds)
            ratios[name].append(seconds / this_round["none"])
    print(f"DCGAN-32 (width 64), batch {batch_size}, {device}, {torch.get_num_threads()} threads, {steps} iterations x {rounds} rounds")
    print("| augmentation | ms per iteration (median) | ratio to none (median) |")
    print("|---|---|---|")
    for name in VARIANTS:
        print(f"| {name} | {1000 * statistics.median(times[name]):.1f} | {statistics.median(ratios[name]):.2f} |")


if __name__ == "__main__":
    from jsonargparse import CLI

    CLI(main, as_positional=False)
