"""Image metrics: equal to torch-fidelity on the same images and weights; sanity of FID; weights resolution; cache.

No Inception weights can be downloaded here, so a random-weights stand-in with the real architecture is saved to a
file and given to both our code and torch-fidelity (``feature_extractor_weights_path``): the code path is the real one.
"""

import math
import urllib.error
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from gan_lightning.errors import ConfigurationError
from gan_lightning.metrics import (
    INCEPTION_WEIGHTS_ENV,
    INCEPTION_WEIGHTS_FILE,
    INCEPTION_WEIGHTS_URL,
    GeneratorEvaluator,
    ImageReference,
    ModuleFeatures,
    image_scores,
    resolve_inception_weights,
    to_uint8,
)
from gan_lightning.metrics.image_metrics import ImageMetricSettings


def save_random_inception_weights(path) -> None:
    """torch-fidelity's InceptionV3 architecture with random (He-normal) weights, saved as a state dict."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    class RandomInit(fe.FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # keep the random initialisation
            return None

    torch.manual_seed(0)
    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}):
        net = RandomInit("random", ["2048"])
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")  # keeps activations at a usable scale
    torch.save(net.state_dict(), path)


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    save_random_inception_weights(path)
    return str(path)


def smooth_images(n: int, seed: int, size: int = 32, blur: int = 5) -> torch.Tensor:
    """Images in [-1, 1] with some structure (blurred noise), different per seed."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    return F.avg_pool2d(x, blur, stride=1, padding=blur // 2).mul(2.5).clamp(-1, 1)


class LookupGenerator(nn.Module):
    """A "generator" that returns fixed images: latent i -> image i (so every pipeline sees the same samples)."""

    def __init__(self, images):
        super().__init__()
        self.register_buffer("images", images)

    def forward(self, z):
        return self.images[z[:, 0].long()]


def index_latents(n, generator):
    return torch.arange(n, dtype=torch.float32)[:, None]


class UInt8Set(Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def test_to_uint8_clamps_instead_of_wrapping():
    x = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0, 1.02, 3.0])
    assert to_uint8(x).tolist() == [0, 0, 128, 255, 255, 255, 255]  # (x*255).byte() would give 1.02 -> 5


def test_scores_equal_torch_fidelity(inception_weights, tmp_path):
    """FID and KID to 1e-4 relative, IS to 1e-3, precision/recall exactly, against torch_fidelity.calculate_metrics."""
    import torch_fidelity

    n = 10  # Inception at 299x299 costs ~0.4 s per image on a 2-core CPU
    fakes, reals = smooth_images(n, seed=1, blur=3), smooth_images(n, seed=2, blur=7)
    reference = ImageReference(TensorDataset(reals, torch.zeros(n)), {"type": "test", "name": "smooth"})
    settings = ImageMetricSettings(is_splits=2)
    evaluator = GeneratorEvaluator(
        reference, num_samples=n, feature_extractor_weights=inception_weights, cache_dir=str(tmp_path), batch_size=n,
        settings=settings,
    )
    ours, protocol = evaluator.evaluate(LookupGenerator(fakes), index_latents)

    theirs = torch_fidelity.calculate_metrics(
        input1=UInt8Set(to_uint8(fakes)),
        input2=UInt8Set(to_uint8(reals)),
        cuda=False, isc=True, fid=True, kid=True, prc=True,
        feature_extractor="inception-v3-compat",  # torch-fidelity's default for precision/recall is VGG16
        feature_extractor_weights_path=inception_weights,
        kid_subset_size=n, isc_splits=2, batch_size=n, save_cpu_ram=True, cache=False, verbose=False,
    )
    assert ours["fid"] > 0
    assert math.isclose(ours["fid"], theirs["frechet_inception_distance"], rel_tol=1e-4)
    assert math.isclose(ours["kid"], theirs["kernel_inception_distance_mean"], rel_tol=1e-4)
    assert math.isclose(ours["is"], theirs["inception_score_mean"], rel_tol=1e-3)
    assert ours["precision"] == theirs["precision"] and ours["recall"] == theirs["recall"]

    # the protocol says what produced the numbers
    assert protocol["num_fake"] == n and protocol["num_real"] == n
    assert protocol["feature_extractor"]["weights_sha256"] and "tf1" in protocol["resize"]
    assert protocol["metric_settings"]["kid_subset_size"] == n
    assert protocol["real_features"].startswith("computed")

    # FID of a set against itself is ~0 (relative to the FID between different sets)
    real_features, real_stats, _ = evaluator.real_features(torch.device("cpu"))
    self_scores = image_scores(real_features, real_features, ["fid"], ImageMetricSettings(), real_stats)
    assert abs(self_scores["fid"]) < 1e-6 * max(1.0, ours["fid"]) + 1e-6

    # the next evaluator (a new run) finds the real features on disk instead of recomputing them
    again = GeneratorEvaluator(reference, n, feature_extractor_weights=inception_weights, cache_dir=str(tmp_path), settings=settings)
    with mock.patch.object(type(again.extractor(torch.device("cpu"))), "extract_batch", side_effect=AssertionError("recomputed")):
        feats, _, _ = again.real_features(torch.device("cpu"))
    assert again.last_real_source.startswith("disk cache")
    assert torch.equal(feats.pool, real_features.pool)


@pytest.mark.slow
def test_inception_fid_grows_with_blur_and_noise(inception_weights, tmp_path):
    n = 24
    reals = smooth_images(n, seed=3)
    reference = ImageReference(TensorDataset(reals, torch.zeros(n)), {"type": "test"})
    evaluator = GeneratorEvaluator(reference, n, metrics=["fid"], feature_extractor_weights=inception_weights, cache_dir=str(tmp_path))
    same = smooth_images(n, seed=4)

    def fid(images):
        return evaluator.evaluate(LookupGenerator(images), index_latents)[0]["fid"]

    noise = torch.randn(same.shape, generator=torch.Generator().manual_seed(0))
    noisy = [fid((same + s * noise).clamp(-1, 1)) for s in (0.0, 0.2, 0.5)]
    assert noisy[0] < noisy[1] < noisy[2]
    blurred = [fid(F.avg_pool2d(same, k, stride=1, padding=k // 2)) for k in (3, 7)]
    assert noisy[0] < blurred[0] < blurred[1]


class TinyFeatures(nn.Module):
    """A small fixed random conv net: the "domain classifier" a user would bring (fast, for CPU tests)."""

    def __init__(self, channels: int = 3, logits: bool = True):
        super().__init__()
        torch.manual_seed(123)
        self.conv = nn.Sequential(nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(32, 10) if logits else None

    def forward(self, x):
        feats = self.conv(x).mean(dim=(2, 3))
        return (feats, self.head(feats)) if self.head is not None else feats


def test_fid_grows_with_blur_and_noise_custom_extractor(tmp_path):
    n = 64
    reals = smooth_images(n, seed=3)
    reference = ImageReference(TensorDataset(reals, torch.zeros(n)), {"type": "test"})
    evaluator = GeneratorEvaluator(reference, n, metrics=["fid"], feature_extractor=TinyFeatures(logits=False), cache_dir=str(tmp_path))

    def fid(images):
        return evaluator.evaluate(LookupGenerator(images), index_latents)[0]["fid"]

    assert abs(fid(reals)) < 1e-6  # the reference against itself
    same = smooth_images(n, seed=4)
    noise = torch.randn(same.shape, generator=torch.Generator().manual_seed(0))
    noisy = [fid((same + s * noise).clamp(-1, 1)) for s in (0.0, 0.2, 0.5)]
    assert noisy[0] < noisy[1] < noisy[2]
    blurred = [fid(F.avg_pool2d(same, k, stride=1, padding=k // 2)) for k in (3, 7)]
    assert noisy[0] < blurred[0] < blurred[1]


def test_custom_extractor_logits_give_inception_score_and_cache_key_tracks_weights(tmp_path):
    n = 32
    reals = smooth_images(n, seed=5)
    reference = ImageReference(TensorDataset(reals, torch.zeros(n)), {"type": "test"})
    a = GeneratorEvaluator(reference, n, feature_extractor=TinyFeatures(), cache_dir=str(tmp_path))
    scores, protocol = a.evaluate(LookupGenerator(smooth_images(n, seed=6)), index_latents)
    assert set(scores) == {"fid", "is", "is_std", "kid", "kid_std", "precision", "recall"}
    assert protocol["feature_extractor"]["name"].endswith("TinyFeatures")
    # new weights -> new key: a changed extractor can never read the old features
    other = TinyFeatures()
    with torch.no_grad():
        other.head.weight.add_(1.0)
    b = GeneratorEvaluator(reference, n, feature_extractor=other, cache_dir=str(tmp_path))
    b.evaluate(LookupGenerator(smooth_images(n, seed=6)), index_latents)
    assert b.last_real_source.startswith("computed")
    assert len(list(tmp_path.glob("real-*.pt"))) == 2
    # other real images (different subset size) -> new key as well
    c = GeneratorEvaluator(reference, n, num_real=n - 1, feature_extractor=TinyFeatures(), cache_dir=str(tmp_path))
    c.evaluate(LookupGenerator(smooth_images(n, seed=6)), index_latents)
    assert c.last_real_source.startswith("computed")
    d = GeneratorEvaluator(reference, n, feature_extractor=TinyFeatures(), cache_dir=str(tmp_path))
    d.evaluate(LookupGenerator(smooth_images(n, seed=6)), index_latents)
    assert d.last_real_source.startswith("disk cache")


def test_weights_resolution_order(tmp_path, monkeypatch):
    explicit, from_env = tmp_path / "explicit.pth", tmp_path / "env.pth"
    explicit.write_bytes(b"x")
    from_env.write_bytes(b"y")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(from_env))
    assert resolve_inception_weights(str(explicit)) == explicit
    assert resolve_inception_weights() == from_env
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV)
    cached = tmp_path / "torch_home" / "hub" / "checkpoints" / INCEPTION_WEIGHTS_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"z")
    assert resolve_inception_weights() == cached


def test_missing_weights_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    calls = []

    def offline(url, dst, **kwargs):
        calls.append((url, dst))
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ConfigurationError) as err:
        resolve_inception_weights()
    message = str(err.value)
    assert calls and calls[0][0] == INCEPTION_WEIGHTS_URL  # the download path is really taken
    assert INCEPTION_WEIGHTS_FILE in message and INCEPTION_WEIGHTS_URL in message
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in message and INCEPTION_WEIGHTS_ENV in message
    with pytest.raises(ConfigurationError, match="does not exist"):
        resolve_inception_weights(str(tmp_path / "nope.pth"))
