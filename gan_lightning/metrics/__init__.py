"""Sample-quality metrics: FID, IS, KID, precision/recall on images; mode coverage on the 2D mixtures.

The pieces, one idea each: :mod:`.weights` (where the Inception weights come from), :mod:`.features`
(InceptionV3 or any ``nn.Module``), :mod:`.reference` (what the samples are compared with), :mod:`.real_cache`
(real features computed once), :mod:`.image_metrics` and :mod:`.mode_coverage` (the scores),
:mod:`.distributed` (sharding across ranks), :mod:`.evaluator` (all of it for one generator) and :mod:`.record`
(the JSON with the protocol); :mod:`.digits_classifier` (a small digits classifier for mode counts on Stacked
Digits and Fréchet distances in its features).
"""

from gan_lightning.metrics.digits_classifier import (
    DigitsClassifier,
    DigitsClassifierFeatures,
    StackedDigitsClassifier,
    load_digits_classifier,
    train_digits_classifier,
)
from gan_lightning.metrics.evaluator import GeneratorEvaluator
from gan_lightning.metrics.features import (
    FeatureExtractor,
    Features,
    InceptionV3Features,
    ModuleFeatures,
    load_module_file,
    save_module_file,
    to_uint8,
)
from gan_lightning.metrics.image_metrics import IMAGE_METRICS, ImageMetricSettings, image_scores
from gan_lightning.metrics.mode_coverage import classifier_mode_coverage, mode_coverage
from gan_lightning.metrics.real_cache import RealFeatureCache
from gan_lightning.metrics.record import make_record, write_record
from gan_lightning.metrics.reference import (
    FeaturesFileReference,
    ImageReference,
    MixtureReference,
    parse_reference,
    reference_from_datamodule,
)
from gan_lightning.metrics.weights import (
    INCEPTION_WEIGHTS_ENV,
    INCEPTION_WEIGHTS_FILE,
    INCEPTION_WEIGHTS_URL,
    resolve_inception_weights,
)

__all__ = [
    "DigitsClassifier",
    "DigitsClassifierFeatures",
    "FeatureExtractor",
    "Features",
    "FeaturesFileReference",
    "GeneratorEvaluator",
    "IMAGE_METRICS",
    "INCEPTION_WEIGHTS_ENV",
    "INCEPTION_WEIGHTS_FILE",
    "INCEPTION_WEIGHTS_URL",
    "ImageMetricSettings",
    "ImageReference",
    "InceptionV3Features",
    "MixtureReference",
    "ModuleFeatures",
    "RealFeatureCache",
    "StackedDigitsClassifier",
    "classifier_mode_coverage",
    "image_scores",
    "load_module_file",
    "load_digits_classifier",
    "make_record",
    "mode_coverage",
    "parse_reference",
    "reference_from_datamodule",
    "resolve_inception_weights",
    "save_module_file",
    "to_uint8",
    "train_digits_classifier",
    "write_record",
]
