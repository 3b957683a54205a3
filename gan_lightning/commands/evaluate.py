"""``python -m gan_lightning evaluate``: scores of a checkpoint's generator, printed and written as JSON with the
protocol that produced them (the same record the GANEvaluation callback writes during training)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch

from gan_lightning.callbacks.evaluation import DEFAULT_NUM_SAMPLES
from gan_lightning.runtime.resume import run_config_beside
from gan_lightning.errors import ConfigurationError
from gan_lightning.metrics.evaluator import GeneratorEvaluator
from gan_lightning.metrics.record import json_safe, make_record, write_record
from gan_lightning.metrics.reference import MixtureReference, parse_reference


def evaluate(
    ckpt_path: str,
    num_samples: Optional[int] = None,
    reference: Optional[str] = None,
    num_real: Optional[int] = None,
    metrics: Optional[list[str]] = None,
    feature_extractor: Optional[str] = None,
    feature_extractor_weights: Optional[str] = None,
    output: Optional[str] = None,
    seed: int = 0,
    batch_size: int = 64,
    cache_dir: Optional[str] = None,
    use_ema: bool = True,
    device: str = "cpu",
    show_progress_after: Optional[float] = 0.0,
    trusted_modules: Optional[str] = None,
    mode_classifier: Optional[str] = None,
) -> dict[str, Any]:
    """Score a checkpoint's generator (FID/IS/KID/precision-recall; mode coverage on 2D mixtures) and write the JSON record.

    Images get FID, IS, KID and precision/recall; the 2D mixtures get modes captured, % high-quality samples and
    reverse KL. The record holds the scores and the protocol (sample counts, reference, extractor and weights hash,
    resize, seed, EMA or raw generator).

    Args:
        ckpt_path: a checkpoint written by ``python -m gan_lightning fit``.
        num_samples: generated samples (default 10000 for images, 2500 for 2D mixtures as in PacGAN).
        reference: the real set. Default: the training data of the run, read from the ``config.yaml`` next to the
            checkpoint. Or: ``ring8`` / ``grid25``; a folder of images; a real-features ``.pt`` file from the cache;
            a datamodule YAML/JSON file or inline ``{class_path: gan_lightning.data.CIFAR10DataModule, init_args: {root: data}}``.
        num_real: real samples (default all of the reference set; a seeded random subset if smaller).
        metrics: image metrics among fid, is, kid, pr (default all; ``[]`` with a mode classifier: modes only).
        feature_extractor: ``inception`` (default), ``digits`` (the penultimate features of the digits classifier of
            :mod:`gan_lightning.metrics.digits_classifier`) or the path of a network file written by
            ``gan_lightning.metrics.save_module_file`` (class path, init args, weights) whose module maps images in
            [-1, 1] to features or (features, logits).
        feature_extractor_weights: InceptionV3 weights file; default ``$GAN_LIGHTNING_INCEPTION_WEIGHTS``, then
            ``$TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth``, then a download.
        output: where to write the JSON record (default ``<checkpoint>.eval.json``).
        seed: seed of the latent noise.
        batch_size: batch size of generation and feature extraction.
        cache_dir: real-features cache (default ``$GAN_LIGHTNING_CACHE`` or ``$TORCH_HOME/gan_lightning/real_features``).
        use_ema: score the EMA generator (``generator_ema``) when the checkpoint has one.
        device: where to run (``cpu``, ``cuda``, ``cuda:1``, ...).
        show_progress_after: show the progress on stderr (samples generated, features extracted, elapsed time: a bar on
            a terminal, a line every 30 s otherwise) once the evaluation has run this many seconds; null never.
        trusted_modules: comma-separated modules (besides gan_lightning, torch, torchvision) whose classes the
            checkpoint, the reference config or the feature-extractor file may name, e.g. ``mypkg`` for your own
            networks (also ``$GAN_LIGHTNING_TRUSTED_MODULES``). Only trust code you would run.
        mode_classifier: count modes by a classifier's labels (``modes_captured``, ``reverse_kl`` to uniform):
            ``stacked_digits`` (the Stacked-MNIST protocol on Stacked Digits, 1,000 modes), ``digits`` (10 classes)
            or the path of a saved module mapping images in [-1, 1] to logits.
    """
    from gan_lightning.commands.sample import load_gan

    if num_samples is not None and num_samples < 2:
        raise ConfigurationError(f"--num_samples must be >= 2, got {num_samples}")
    ckpt = Path(ckpt_path).expanduser()
    model = load_gan(ckpt_path, map_location=device, trusted_modules=trusted_modules)
    sample_shape = tuple(model.generate(1, seed=0).shape[1:])
    if reference is None:
        config = run_config_beside(str(ckpt))
        if config is None:
            raise ConfigurationError(
                f"No --reference given and no config.yaml found next to {str(ckpt)!r}; pass --reference (ring8, grid25, an "
                "image folder, a real-features .pt file or a datamodule config)."
            )
        reference = str(config)
    ref = parse_reference(reference, sample_shape, trusted_modules)
    kind = "points" if isinstance(ref, MixtureReference) else "images"
    ema = getattr(model, "generator_ema", None) if use_ema else None
    generator = ema if isinstance(ema, torch.nn.Module) else model.generator
    evaluator = GeneratorEvaluator(
        ref,
        num_samples=num_samples or DEFAULT_NUM_SAMPLES[kind],
        metrics=metrics,
        num_real=num_real,
        feature_extractor=feature_extractor,
        feature_extractor_weights=feature_extractor_weights,
        seed=seed,
        batch_size=batch_size,
        cache_dir=cache_dir,
        show_progress_after=show_progress_after,
        trusted_modules=trusted_modules,
        mode_classifier=mode_classifier,
    )
    scores, protocol = evaluator.evaluate(generator, model.sample_latent, torch.device(device), title=f"evaluate {ckpt.name}")
    protocol = {"checkpoint": str(ckpt), "generator": "ema" if generator is ema else "raw", **protocol}
    record = make_record(scores, protocol)
    out = write_record(record, output or ckpt.with_suffix(".eval.json"))
    print(json.dumps(json_safe(record), indent=2))
    print(f"wrote {out}")
    return record
