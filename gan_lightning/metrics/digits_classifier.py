"""A small digits classifier, trained here deterministically in seconds on a CPU, for counting modes on digit images.

Stacked MNIST (Metz et al. 2017; Srivastava et al. 2017; Lin et al. 2018, Table 2) counts modes with a pretrained
MNIST classifier applied to each colour channel. The offline counterpart here is a tiny CNN trained on scikit-learn's
1,797 digits at 32x32 (:func:`gan_lightning.data.digits.load_digits_tensor`): a seeded 20 % of them is held out and
the rest trained on, with small random translations, scalings and pixel noise so that slightly imperfect generated
digits are still read correctly. Its held-out accuracy is reported with it and written into every protocol record.

- :class:`DigitsClassifier`: 32x32 one-channel digits in [-1, 1] -> 10 logits; ``features`` gives the 128-d
  penultimate layer.
- :class:`StackedDigitsClassifier`: 3-channel stacked digits -> 1,000 logits (one per digit triple), the per-channel
  log-probabilities summed, so its argmax is the triple of per-channel argmaxes. It plugs into
  ``ModeCollapseMonitor(classifier=...)`` and ``GANEvaluation(mode_classifier=...)``.
- :class:`DigitsClassifierFeatures`: the penultimate features as a feature extractor, for a Fréchet distance in them
  (``feature_extractor: digits``).

Trained weights are cached as ``digits_classifier-<recipe hash>-seed<seed>.pt`` (plain tensors, loaded with
``torch.load(weights_only=True)``) under ``$GAN_LIGHTNING_CACHE`` or ``$TORCH_HOME/gan_lightning/classifiers``.

    python -m gan_lightning.metrics.digits_classifier --seed 0      # train (or load), print the held-out accuracy
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.errors import ConfigurationError
from gan_lightning.metrics.features import FeatureExtractor, Features
from gan_lightning.metrics.weights import module_sha256
from gan_lightning.runtime import cache_dirs

CACHE_ENV = cache_dirs.CACHE_ENV
FORMAT_VERSION = 1
IMAGE_SIZE = 32
FEATURE_DIM = 128

#: Everything that determines the trained weights besides the seed (part of the cache file's name).
RECIPE: dict[str, Any] = {
    "architecture": "conv3x3(1->16)-relu-maxpool, conv3x3(16->32)-relu-maxpool, conv3x3(32->64)-relu-maxpool, "
                    "linear(1024->128)-relu, linear(128->10)",
    "data": "sklearn load_digits, 8x8 -> 32x32 bilinear, [-1, 1]",
    "holdout_fraction": 0.2,
    "epochs": 12,
    "batch_size": 64,
    "optimizer": "Adam lr 2e-3, cosine decay to 0",
    "augmentation": "per sample: translation up to 3 px, scale 0.9-1.1, Gaussian pixel noise std 0.1",
}


def default_cache_dir() -> Path:
    return cache_dirs.default_cache_dir("classifiers")


def _recipe_hash() -> str:
    return hashlib.sha256(json.dumps({"format": FORMAT_VERSION, **RECIPE}, sort_keys=True).encode()).hexdigest()[:16]


def _to_classifier_input(x: Tensor) -> Tensor:
    """(N, 1, H, W) float in [-1, 1] at 32x32 (bilinear resize when another size comes in)."""
    if x.dim() != 4 or x.shape[1] != 1:
        raise ConfigurationError(f"The digits classifier takes one-channel images (N, 1, H, W); got shape {tuple(x.shape)}.")
    x = x.float()
    if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False, antialias=True)
    return x


class DigitsClassifier(nn.Module):
    """32x32 one-channel digits in [-1, 1] -> 10 class logits (``features``: the 128-d penultimate layer)."""

    num_modes = 10

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 4 * 4, FEATURE_DIM), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, 10)
        #: filled by training or loading: seed, held-out accuracy, split sizes
        self.info: dict[str, Any] = {}

    def features(self, x: Tensor) -> Tensor:
        return self.body(_to_classifier_input(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def identity(self) -> dict[str, Any]:
        return {"name": "gan_lightning digits classifier", "recipe": RECIPE, **self.info, "weights_sha256": module_sha256(self)}


class StackedDigitsClassifier(nn.Module):
    """(N, 3, H, W) stacked digits -> (N, 1000) logits of the digit triple 100 R + 10 G + B.

    The triple's logit is the sum of the three channels' log-softmax outputs (the channels are classified
    independently), so ``argmax`` gives each channel's most likely digit. Built from a classifier, or trained /
    loaded by seed (what a YAML ``class_path`` block does).
    """

    num_modes = 1000

    def __init__(self, seed: int = 0, cache_dir: Optional[str] = None, classifier: Optional[DigitsClassifier] = None):
        super().__init__()
        self.digits = classifier if classifier is not None else load_digits_classifier(seed, cache_dir)

    def channel_labels(self, x: Tensor) -> Tensor:
        """(N, 3) the digit read in each channel."""
        n, c = x.shape[:2]
        return self.digits(x.reshape(n * c, 1, *x.shape[2:])).argmax(1).reshape(n, c)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ConfigurationError(f"StackedDigitsClassifier takes 3-channel images (N, 3, H, W); got shape {tuple(x.shape)}.")
        n = x.shape[0]
        logp = F.log_softmax(self.digits(x.reshape(n * 3, 1, *x.shape[2:])), dim=1).reshape(n, 3, 10)
        return (logp[:, 0, :, None, None] + logp[:, 1, None, :, None] + logp[:, 2, None, None, :]).reshape(n, 1000)

    def identity(self) -> dict[str, Any]:
        return {"name": "stacked digits: the digits classifier on each channel, mode = 100 R + 10 G + B",
                "digits_classifier": self.digits.identity()}


class DigitsClassifierFeatures(FeatureExtractor):
    """The classifier's penultimate features (128-d per channel, channels concatenated) for Fréchet distances;
    class logits for IS on one-channel images."""

    resize = "bilinear (antialias) to 32x32 when the images are another size"

    def __init__(self, classifier: Optional[DigitsClassifier] = None, seed: int = 0, cache_dir: Optional[str] = None):
        super().__init__()
        self.classifier = (classifier if classifier is not None else load_digits_classifier(seed, cache_dir)).eval()

    def extract_batch(self, images: Tensor) -> Features:
        x = images.float() / 127.5 - 1  # uint8 -> the data's [-1, 1]
        n, c = x.shape[:2]
        flat = x.reshape(n * c, 1, *x.shape[2:])
        pool = self.classifier.features(flat)
        logits = self.classifier.head(pool) if c == 1 else None
        return Features(pool.reshape(n, c * FEATURE_DIM), logits)

    def identity(self) -> dict[str, Any]:
        return {
            **self.classifier.identity(),
            "layers": {"fid/kid/pr": f"penultimate: {FEATURE_DIM}-d ReLU output of linear(1024->128), per channel, "
                                     "channels concatenated", "is": "the 10 class logits (one-channel images only)"},
            "resize": self.resize,
        }


def _augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random translation (up to 3 px), scale (0.9-1.1) and pixel noise, batched (one affine grid per sample)."""
    n = x.shape[0]
    scale = 0.9 + 0.2 * torch.rand(n, generator=generator)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (3 * 2 / IMAGE_SIZE)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # padding with the background value (-1): the digits sit on a black field
    moved = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1
    return moved + 0.1 * torch.randn(x.shape, generator=generator)


def split_indices(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """(train, held-out) indices: a seeded permutation, the last ``holdout_fraction`` held out."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = n - int(round(RECIPE["holdout_fraction"] * n))
    return order[:cut], order[cut:]


@torch.no_grad()
def accuracy(classifier: nn.Module, images: Tensor, labels: Tensor) -> float:
    was_training = classifier.training
    classifier.eval()
    try:
        return float((classifier(images).argmax(1) == labels).float().mean())
    finally:
        classifier.train(was_training)


def train_digits_classifier(seed: int = 0, epochs: Optional[int] = None) -> DigitsClassifier:
    """Train on the digits outside the seeded held-out split; deterministic given ``seed``.

    ``epochs`` overrides the recipe's (for quick checks; the cached classifiers always use the recipe). The global
    RNG is left as it was. ``classifier.info`` holds the held-out accuracy and the split sizes. Trains on one thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same reduction order on every machine, and no thread contention on small batches
    try:
        return _train(seed, epochs or RECIPE["epochs"])
    finally:
        torch.set_num_threads(threads)


def _train(seed: int, epochs: int) -> DigitsClassifier:
    from gan_lightning.data.digits import load_digits_tensor

    start = time.perf_counter()
    images, labels = load_digits_tensor(IMAGE_SIZE, channels=1)
    train, held_out = split_indices(len(images), seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DigitsClassifier()
    batch = RECIPE["batch_size"]
    steps = epochs * math.ceil(len(train) / batch)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    net.train()
    for _ in range(epochs):
        order = train[torch.randperm(len(train), generator=generator)]
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            loss = F.cross_entropy(net(_augment(images[idx], generator)), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    net.info = {
        "seed": seed,
        "epochs": epochs,
        "heldout_accuracy": accuracy(net, images[held_out], labels[held_out]),
        "train_size": len(train),
        "heldout_size": len(held_out),
        "train_seconds": round(time.perf_counter() - start, 2),
    }
    return net


def _cache_path(seed: int, cache_dir: Optional[str | Path]) -> Path:
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return folder / f"digits_classifier-{_recipe_hash()}-seed{seed}.pt"


def load_digits_classifier(seed: int = 0, cache_dir: Optional[str | Path] = None, cache: bool = True) -> DigitsClassifier:
    """The classifier of ``seed`` from the cache (``torch.load(weights_only=True)``), trained and cached if missing."""
    path = _cache_path(seed, cache_dir)
    if cache and path.is_file():
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            net = DigitsClassifier()
            net.load_state_dict(entry["state_dict"])
            net.info = dict(entry["info"])
            net.eval().requires_grad_(False)
            return net
        except Exception:  # noqa: BLE001 - a truncated or foreign file is replaced by a fresh training
            pass
    net = train_digits_classifier(seed)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save({"format": FORMAT_VERSION, "recipe": RECIPE, "info": net.info, "state_dict": net.state_dict()}, tmp)
        os.replace(tmp, path)
    return net


#: Names accepted where a classifier or feature extractor is configured by a string.
NAMED_CLASSIFIERS = ("digits", "stacked_digits")


def named_classifier(name: str) -> nn.Module:
    """``digits`` (10 classes) or ``stacked_digits`` (1,000 triples), seed 0."""
    if name == "digits":
        return load_digits_classifier(0)
    if name == "stacked_digits":
        return StackedDigitsClassifier(0)
    raise ConfigurationError(f"Unknown classifier name {name!r}; choose one of {', '.join(NAMED_CLASSIFIERS)} or give a module file.")


def main(seed: int = 0, cache_dir: Optional[str] = None) -> dict[str, Any]:
    """Train (or load from the cache) the digits classifier of ``seed`` and print its held-out accuracy."""
    net = load_digits_classifier(seed, cache_dir)
    print(f"digits classifier seed {seed}: held-out accuracy {net.info['heldout_accuracy']:.4f} "
          f"({net.info['heldout_size']} held out, {net.info['train_size']} trained on, "
          f"{net.info['train_seconds']} s to train); weights {_cache_path(seed, cache_dir)}")
    return net.info


if __name__ == "__main__":
    from jsonargparse import CLI

    CLI(main, as_positional=False)
