"""In-training evaluation: FID/IS/KID/precision-recall on images, mode coverage on the 2D mixtures.

Nothing of it lives on the LightningModule: the Inception network and the real features stay in this callback,
whose checkpointed state is only the step and scores of the last evaluation. Scores are written straight to the
loggers with ``step = trainer.global_step`` (generator steps; ``self.log`` would only reach the logger on
``log_every_n_steps`` boundaries), and put into ``trainer.callback_metrics`` for that one step so a
``ModelCheckpoint``/``GANCheckpoint(monitor="fid")`` sees them. Lightning runs checkpoint callbacks after all
other callbacks, so the checkpoint in the same ``on_train_batch_end`` sees the fresh score; give the checkpoint
an ``every_n_train_steps`` that is a multiple of ``every_n_steps``, since the score is removed at the next step
(a stale score must not rank a later model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn

from gan_lightning.errors import ConfigurationError
from gan_lightning.metrics.evaluator import GeneratorEvaluator
from gan_lightning.metrics.record import make_record, write_record
from gan_lightning.metrics.reference import MixtureReference, parse_reference, reference_from_datamodule

DEFAULT_NUM_SAMPLES = {"points": 2500, "images": 10000}  # PacGAN's 2,500 points; the common 10k for FID


class GANEvaluation(Callback):
    """Scores the generator every ``every_n_steps`` generator steps and when training ends.

    Args:
        every_n_steps: evaluation interval in generator steps (0: only at the end of fit).
        num_samples: generated samples per evaluation (default 10,000 for images, 2,500 for 2D mixtures),
            split across processes.
        metrics: image metrics among ``fid``, ``is``, ``kid``, ``pr`` (default all); mixtures always report
            ``modes_captured``, ``high_quality_percent`` and ``reverse_kl``.
        reference: what to compare with; default the training datamodule's data. Otherwise a mixture name, an
            image folder, a real-features ``.pt`` file, or a datamodule (``{class_path, init_args}`` or a YAML file).
        num_real: real samples (default: the whole reference set; a seeded random subset if smaller).
        feature_extractor: ``None`` for InceptionV3, ``digits`` for the digits classifier's penultimate features
            (a Fréchet distance on digit images without Inception), or any ``nn.Module`` (or the path of a file written
            by ``gan_lightning.metrics.save_module_file``; its class must come from gan_lightning, torch, torchvision or
            ``$GAN_LIGHTNING_TRUSTED_MODULES``) mapping images in [-1, 1] to features, or to ``(features, logits)`` for IS.
        feature_extractor_weights: InceptionV3 weights file (else ``$GAN_LIGHTNING_INCEPTION_WEIGHTS``, then
            ``$TORCH_HOME/hub/checkpoints``, then a download).
        seed: latent seed (the same latents at every evaluation, so scores move only with the generator).
        batch_size: batch size of generation and feature extraction.
        cache_dir: real-features cache (default ``$TORCH_HOME/gan_lightning/real_features``).
        use_ema: score ``generator_ema`` when the module has one.
        evaluate_at_end: also evaluate when training ends (if the last step was not just evaluated).
        record_dir: where the JSON records go (default ``<log_dir>/evaluation``).
        show_progress_after: an evaluation that runs longer than this many seconds shows its progress on stderr
            (rank 0: samples generated, features extracted, elapsed time; a bar on a terminal, a line every 30 s in
            logs) and ends with a line of scores; 0 always, null never.
        mode_classifier: images only: a classifier whose labels are the modes, adding ``modes_captured`` (modes with
            at least one sample) and ``reverse_kl`` (KL to uniform over its modes): ``stacked_digits`` (1,000 digit
            triples, the Stacked-MNIST protocol), ``digits`` (10 classes), an ``nn.Module`` mapping images in [-1, 1]
            to logits, or a saved module's path. With ``metrics: []`` only the modes are computed.
    """

    def __init__(
        self,
        every_n_steps: int = 5000,
        num_samples: Optional[int] = None,
        metrics: Optional[list[str]] = None,
        reference: Optional[Union[str, dict]] = None,
        num_real: Optional[int] = None,
        feature_extractor: Optional[Union[nn.Module, str]] = None,
        feature_extractor_weights: Optional[str] = None,
        seed: int = 0,
        batch_size: int = 64,
        cache_dir: Optional[str] = None,
        use_ema: bool = True,
        evaluate_at_end: bool = True,
        record_dir: Optional[str] = None,
        show_progress_after: Optional[float] = 5.0,
        mode_classifier: Optional[Union[nn.Module, str]] = None,
    ):
        if every_n_steps < 0:
            raise ConfigurationError(f"every_n_steps must be >= 0, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.metrics = metrics
        self.reference = reference
        self.num_real = num_real
        self.feature_extractor = feature_extractor
        self.feature_extractor_weights = feature_extractor_weights
        self.seed = seed
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.use_ema = use_ema
        self.evaluate_at_end = evaluate_at_end
        self.record_dir = record_dir
        self.show_progress_after = show_progress_after
        self.mode_classifier = mode_classifier
        self.evaluator: Optional[GeneratorEvaluator] = None
        self.last_step: int = -1
        self.last_scores: dict[str, float] = {}
        self.last_record: Optional[dict[str, Any]] = None
        self._record_dir: Optional[Path] = None
        self._fresh_keys: list[str] = []

    # ------------------------------------------------------------------ setup
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or self.evaluator is not None:
            return
        datamodule = getattr(trainer, "datamodule", None)
        if self.reference is not None:
            shape = tuple(datamodule.data_shape) if datamodule is not None and hasattr(datamodule, "data_shape") else ()
            reference = parse_reference(self.reference, shape)
        elif datamodule is not None:
            reference = reference_from_datamodule(datamodule)
        else:
            raise ConfigurationError("GANEvaluation needs a reference: train with a datamodule or set `reference`.")
        kind = "points" if isinstance(reference, MixtureReference) else "images"
        self.evaluator = GeneratorEvaluator(
            reference,
            num_samples=self.num_samples or DEFAULT_NUM_SAMPLES[kind],
            metrics=self.metrics,
            num_real=self.num_real,
            feature_extractor=self.feature_extractor,
            feature_extractor_weights=self.feature_extractor_weights,
            seed=self.seed,
            batch_size=self.batch_size,
            cache_dir=self.cache_dir,
            show_progress_after=self.show_progress_after,
            mode_classifier=self.mode_classifier,
        )
        # trainer.log_dir is a broadcast: resolve it here, on every rank, never in rank-0-only code
        base = self.record_dir or str(Path(trainer.log_dir or trainer.default_root_dir) / "evaluation")
        self._record_dir = Path(base)

    # ------------------------------------------------------------------ hooks
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        for key in self._fresh_keys:  # a score describes the model of its own step only
            trainer.callback_metrics.pop(key, None)
        self._fresh_keys = []

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0 and step != self.last_step:
            self.run(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.evaluate_at_end and trainer.global_step != self.last_step:
            self.run(trainer, pl_module)

    # ------------------------------------------------------------------ evaluation
    def run(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, float]:
        """Evaluate now (on every rank), log, expose to checkpoint callbacks and write the JSON record."""
        assert self.evaluator is not None, "setup() was not called"
        ema = getattr(pl_module, "generator_ema", None) if self.use_ema else None
        generator = ema if isinstance(ema, nn.Module) else pl_module.generator  # type: ignore[union-attr]
        step = trainer.global_step
        scores, protocol = self.evaluator.evaluate(
            generator, pl_module.sample_latent, pl_module.device, title=f"GANEvaluation at generator step {step}"  # type: ignore[operator]
        )
        protocol = {"step": step, "generator": "ema" if generator is ema else "raw", **protocol}
        record = make_record(scores, protocol)

        for key, value in scores.items():
            trainer.callback_metrics[key] = torch.tensor(value)
        self._fresh_keys = list(scores)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(dict(scores), step=step)
            if self._record_dir is not None:
                write_record(record, self._record_dir / f"step_{step:09d}.json")
        self.last_step, self.last_scores, self.last_record = step, scores, record
        return scores

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "last_scores": dict(self.last_scores)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_step = int(state_dict.get("last_step", -1))
        self.last_scores = dict(state_dict.get("last_scores", {}))
