"""Scores one generator against one reference set: the engine shared by the training callback and ``evaluate``.

N latents are drawn from ``seed`` on every rank; each rank generates and featurises its own slice (N/world_size),
and the slices are all-gathered in order, so every rank computes the same score as one process would on the same
samples. Real features are computed once per (data, extractor, weights), kept in memory for the next evaluation
and on disk for the next run (:mod:`gan_lightning.metrics.real_cache`).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from gan_lightning.errors import ConfigurationError
from gan_lightning.metrics import distributed as D
from gan_lightning.metrics.features import FeatureExtractor, Features, autocast_off, build_feature_extractor, to_uint8
from gan_lightning.metrics.image_metrics import (
    IMAGE_METRICS,
    ImageMetricSettings,
    check_metric_names,
    fid_statistics,
    image_scores,
)
from gan_lightning.networks.interface import eval_mode
from gan_lightning.metrics.mode_coverage import classifier_mode_coverage, mode_coverage
from gan_lightning.metrics.progress import Advance, EvaluationProgress
from gan_lightning.metrics.real_cache import RealFeatureCache, fid_stats_of
from gan_lightning.metrics.reference import FeaturesFileReference, ImageReference, MixtureReference, Reference, content_sha256

LatentSampler = Callable[[int, torch.Generator], Tensor]

IMAGE_CONVERSION = "uint8: round((x + 1) * 127.5) clamped to [0, 255] (no wrap-around)"
CLASSIFIER_MODES = ("modes_captured: modes (classifier labels) with >= 1 generated sample; reverse_kl: KL(generated "
                    "mode histogram || uniform over the modes), nats (Stacked MNIST: Metz et al. 2017, VEEGAN, PacGAN "
                    "Table 2); generated samples quantised to uint8 like the real ones before classification")


def build_mode_classifier(spec: Optional[nn.Module | str], trusted_modules: Optional[str] = None) -> Optional[nn.Module]:
    """An ``nn.Module`` as given; ``digits`` / ``stacked_digits`` (the classifiers of
    :mod:`gan_lightning.metrics.digits_classifier`); or the path of a network file (:func:`save_module_file`)."""
    if spec is None or isinstance(spec, nn.Module):
        return spec
    from gan_lightning.metrics.digits_classifier import NAMED_CLASSIFIERS, named_classifier
    from gan_lightning.metrics.features import load_module_file

    return named_classifier(spec) if spec in NAMED_CLASSIFIERS else load_module_file(spec, trusted_modules)


def classifier_identity(classifier: nn.Module) -> dict[str, Any]:
    """The classifier's own ``identity()`` when it has one, else its class and weights hash; plus its mode count."""
    from gan_lightning.metrics.weights import module_sha256

    identity = getattr(classifier, "identity", None)
    described = identity() if callable(identity) else {
        "name": f"{type(classifier).__module__}.{type(classifier).__qualname__}", "weights_sha256": module_sha256(classifier)}
    return described


class GeneratorEvaluator:
    """FID/IS/KID/precision-recall for images, mode coverage for 2D mixtures, and mode counts by a classifier.

    Args:
        reference: the real set (see :mod:`gan_lightning.metrics.reference`).
        num_samples: generated samples per evaluation (split across ranks).
        metrics: image metrics among ``fid``, ``is``, ``kid``, ``pr`` (default: all). Ignored for mixtures.
        num_real: real samples used (default: the whole reference set); a seeded random subset otherwise.
        feature_extractor: ``None``/``"inception"`` for InceptionV3, an ``nn.Module``, or the path of a file written by
            :func:`~gan_lightning.metrics.features.save_module_file`.
        feature_extractor_weights: path of the InceptionV3 weights (else env var / torch.hub cache / download).
        seed: seed of the latent noise, so successive evaluations compare the same latents.
        batch_size: generator and extractor batch size.
        cache_dir: real-features cache folder (default ``$TORCH_HOME/gan_lightning/real_features``); ``cache=False`` disables it.
        show_progress_after: print the progress of an evaluation (stderr, rank 0; :mod:`gan_lightning.metrics.progress`)
            once it has run this many seconds; None prints nothing.
        trusted_modules: comma-separated modules whose classes a feature-extractor file may name, besides
            gan_lightning, torch, torchvision and ``$GAN_LIGHTNING_TRUSTED_MODULES`` (:mod:`gan_lightning.runtime.trust`).
        mode_classifier: images only: an ``nn.Module`` mapping images in [-1, 1] to mode logits (N, K) (or ``digits``,
            ``stacked_digits``, or a saved module's path); adds ``modes_captured`` and ``reverse_kl`` over its K modes.
            With ``metrics=[]`` nothing else is computed (no feature extractor, no real features).
    """

    def __init__(
        self,
        reference: Reference,
        num_samples: int,
        metrics: Optional[list[str]] = None,
        num_real: Optional[int] = None,
        feature_extractor: Optional[nn.Module | str] = None,
        feature_extractor_weights: Optional[str] = None,
        seed: int = 0,
        batch_size: int = 64,
        cache_dir: Optional[str] = None,
        cache: bool = True,
        settings: Optional[ImageMetricSettings] = None,
        show_progress_after: Optional[float] = None,
        trusted_modules: Optional[str] = None,
        mode_classifier: Optional[nn.Module | str] = None,
    ):
        if num_samples < 2:
            raise ConfigurationError(f"num_samples must be >= 2, got {num_samples}")
        if num_real is not None and num_real < 2:
            raise ConfigurationError(f"num_real must be >= 2, got {num_real}")
        self.reference = reference
        self.num_samples = num_samples
        self.metrics = check_metric_names(list(metrics) if metrics is not None else list(IMAGE_METRICS))
        self.num_real = num_real
        self.seed = seed
        self.batch_size = batch_size
        self.cache = RealFeatureCache(cache_dir) if cache else None
        self.settings = settings or ImageMetricSettings()
        self.show_progress_after = show_progress_after
        self._extractor_spec = (feature_extractor, feature_extractor_weights, trusted_modules)
        self.mode_classifier = build_mode_classifier(mode_classifier, trusted_modules)
        self._extractor: Optional[FeatureExtractor] = None
        self._real: Optional[tuple[Features, Optional[dict], dict[str, Any]]] = None
        self.last_real_source = ""

    # ------------------------------------------------------------------ extractor and real features
    def extractor(self, device: torch.device) -> FeatureExtractor:
        """Built on first use (so a toy run never loads Inception) and kept out of any LightningModule."""
        if self._extractor is None:
            self._extractor = build_feature_extractor(*self._extractor_spec)
        return self._extractor.to(device)

    def real_features(self, device: torch.device, progress: Optional[EvaluationProgress] = None) -> tuple[Features, Optional[dict], dict[str, Any]]:
        """(features, FID statistics, description) of the reference; memory, then disk cache, then computed."""
        progress = progress or EvaluationProgress("real features", delay=None)
        if self._real is not None:
            self.last_real_source = "memory"
            return self._real
        extractor = self.extractor(device)
        if isinstance(self.reference, FeaturesFileReference):
            entry = self.reference.entry
            wanted, stored = extractor.identity(), entry["key_fields"]["feature_extractor"]
            if wanted.get("weights_sha256") != stored.get("weights_sha256") or wanted.get("resize") != stored.get("resize"):
                raise ConfigurationError(
                    f"{self.reference.path} holds features of another extractor or weights ({stored.get('name')}, sha256 "
                    f"{stored.get('weights_sha256', '')[:12]}) than the one in use ({wanted.get('name')}, sha256 "
                    f"{wanted.get('weights_sha256', '')[:12]}); use the matching weights or recompute from the data."
                )
            self._real = (self.reference.features, fid_stats_of(entry), {**self.reference.description, "num_real": len(self.reference.features)})
            self.last_real_source = f"file {self.reference.path}"
            return self._real
        assert isinstance(self.reference, ImageReference)
        total = len(self.reference) if self.num_real is None else min(self.num_real, len(self.reference))
        with progress.phase("loading real images", total, "images") as advance:
            images = self.reference.load_uint8(self.num_real, progress=advance)  # all ranks load the same set
        key_fields = {
            "reference": self.reference.description,
            "num_real": len(images),
            "images_sha256": content_sha256(images),
            "feature_extractor": {k: v for k, v in extractor.identity().items() if k != "weights_path"},
        }
        entry = None
        if self.cache is not None:
            hit = D.broadcast_object(self.cache.path(key_fields).is_file())  # one decision for every rank
            entry = self.cache.load(key_fields) if hit else None
        if entry is not None:
            features, stats = Features.from_dict(entry["features"]), fid_stats_of(entry)
            self.last_real_source = f"disk cache {self.cache.path(key_fields)}"  # type: ignore[union-attr]
            progress.note(f"real features from the {self.last_real_source}")
        else:
            part = D.shard(len(images))
            with progress.phase("features of real images" + _share(), part.stop - part.start, "images") as advance:
                local = extractor.extract(images[part], self.batch_size, progress=advance)
            features = self._gather(local, len(images))
            stats = fid_statistics(features.pool)
            self.last_real_source = "computed"
            if self.cache is not None and D.rank() == 0:
                path = self.cache.save(key_fields, features, stats)
                self.last_real_source = f"computed, cached to {path}"
        description = {**self.reference.description, "num_real": len(images), "subset_seed": self.reference.subset_seed,
                       "images_sha256": key_fields["images_sha256"]}
        self._real = (features, stats, description)
        return self._real

    @staticmethod
    def _gather(local: Features, n: int) -> Features:
        pool = D.gather_shards(local.pool, n)
        logits = D.gather_shards(local.logits, n) if local.logits is not None else None
        return Features(pool, logits)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate_shard(self, generator: nn.Module, sample_latent: LatentSampler, progress: Optional[Advance] = None) -> Tensor:
        """This rank's slice of the N samples drawn from ``seed``, generated in eval mode with autocast off;
        ``progress(n)`` is called after each batch of ``n`` samples."""
        rng = torch.Generator().manual_seed(self.seed)
        z_all = sample_latent(self.num_samples, rng)
        z = z_all[D.shard(self.num_samples)]
        # A conditional generator gets uniform labels drawn from the same seed (and sharded the same way).
        num_classes = getattr(generator, "num_classes", 0)
        labels = None
        if isinstance(num_classes, int) and num_classes > 0:
            labels = torch.randint(num_classes, (self.num_samples,), generator=rng)[D.shard(self.num_samples)].to(z.device)
        D.sync_buffers(generator)  # same BatchNorm statistics on every rank, so shards come from one generator
        param = next(iter(generator.parameters()), None)
        dtype = param.dtype if param is not None and param.dtype.is_floating_point else torch.float32
        with eval_mode(generator):
            with autocast_off(z.device):
                chunks = []
                for i in range(0, len(z), self.batch_size):
                    args = (z[i : i + self.batch_size].to(dtype),) + (() if labels is None else (labels[i : i + self.batch_size],))
                    chunks.append(generator(*args).float())
                    if progress is not None:
                        progress(len(chunks[-1]))
        return torch.cat(chunks) if chunks else torch.empty(0)

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def classify(self, samples: Tensor, device: torch.device) -> tuple[Tensor, int]:
        """(mode label of every one of the N samples, in order, on every rank; number of modes) by ``mode_classifier``.

        Samples go through the same uint8 quantisation as real images, then back to [-1, 1], in float32.
        """
        classifier = self.mode_classifier
        assert classifier is not None
        classifier.to(device).eval()
        labels, num_modes = [], 0
        with autocast_off(device):
            for i in range(0, len(samples), self.batch_size):
                images = to_uint8(samples[i : i + self.batch_size]).to(device).float() / 127.5 - 1
                logits = classifier(images)
                num_modes = int(logits.shape[1])
                labels.append(logits.argmax(1).cpu())
        local = torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)
        num_modes = int(getattr(classifier, "num_modes", 0)) or num_modes
        return D.gather_shards(local, self.num_samples), num_modes

    def evaluate(
        self, generator: nn.Module, sample_latent: LatentSampler, device: Optional[torch.device] = None, title: str = "evaluation"
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """(scores, protocol). A collective under DDP: call it on every rank. ``title`` names it in the progress lines."""
        start = time.perf_counter()
        progress = EvaluationProgress(title, delay=self.show_progress_after)
        part = D.shard(self.num_samples)
        with progress.phase("generating samples" + _share(), part.stop - part.start, "samples") as advance:
            samples = self.generate_shard(generator, sample_latent, progress=advance)
        device = device or samples.device
        protocol: dict[str, Any] = {
            "num_fake": self.num_samples,
            "seed": self.seed,
            "world_size": D.world_size(),
        }
        if isinstance(self.reference, MixtureReference):
            if samples.dim() != 2 or samples.shape[1] != self.reference.modes.shape[1]:
                raise ConfigurationError(f"Mode coverage needs 2D points; the generator makes samples of shape {tuple(samples.shape[1:])}.")
            points = D.gather_shards(samples, self.num_samples)
            scores = mode_coverage(points, self.reference.modes, self.reference.std)
            protocol.update(reference=self.reference.description, definition="high quality: within 3 std of the nearest mode; "
                            "captured: >= 1 high-quality sample; reverse_kl: KL(HQ mode histogram || uniform)")
        else:
            if samples.dim() != 4:
                raise ConfigurationError(f"Image metrics need images (N, C, H, W); the generator makes samples of shape {tuple(samples.shape[1:])}.")
            scores = {}
            if self.metrics:
                extractor = self.extractor(device)
                real, real_stats, real_description = self.real_features(device, progress)
                with progress.phase("features of generated samples" + _share(), len(samples), "samples") as advance:
                    local = extractor.extract(to_uint8(samples), self.batch_size, progress=advance)
                fake = self._gather(local, self.num_samples)
                settings = self.settings.effective(len(fake), len(real))
                with progress.phase("scores", len(self.metrics), "metrics") as advance:
                    for metric in self.metrics:  # one at a time, so that the progress moves (PR and KID take the longest)
                        scores.update(image_scores(fake, real, [metric], settings, real_stats))
                        advance(1)
                protocol.update(
                    num_real=len(real),
                    reference=real_description,
                    metrics=self.metrics,
                    feature_extractor=extractor.identity(),
                    resize=extractor.resize,
                    image_conversion=IMAGE_CONVERSION,
                    metric_settings=settings.as_dict(),
                    real_features=self.last_real_source,
                )
            if self.mode_classifier is not None:
                labels, num_modes = self.classify(samples, device)
                scores.update(classifier_mode_coverage(labels, num_modes))
                protocol.update(mode_classifier={**classifier_identity(self.mode_classifier), "num_modes": num_modes},
                                mode_definition=CLASSIFIER_MODES)
            if not self.metrics and self.mode_classifier is None:
                raise ConfigurationError("Nothing to evaluate: metrics is empty and no mode_classifier is set.")
        protocol["seconds"] = round(time.perf_counter() - start, 3)
        progress.finish(scores)
        return scores, protocol


def _share() -> str:
    """Under DDP every rank works on its own slice; rank 0 shows the progress of its own."""
    return f" (rank 0's share of {D.world_size()})" if D.world_size() > 1 else ""
