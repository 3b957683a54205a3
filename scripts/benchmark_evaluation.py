"""Time one in-training evaluation (GeneratorEvaluator, what GANEvaluation runs) against torch-fidelity's own
``calculate_metrics`` on the same images and the same InceptionV3 weights, with a cold and a warm real-features cache.

    python scripts/benchmark_evaluation.py --num_samples 32 [--weights weights-inception-2015-12-05-6726825d.pth]

Without ``--weights`` (offline), a random-weights stand-in of the same architecture is used: the cost is identical.
Both sides compute FID, IS, KID and precision/recall from Inception features (torch-fidelity is told to use
Inception for precision/recall too; its default there is VGG16).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from gan_lightning.metrics import GeneratorEvaluator, ImageMetricSettings, ImageReference, to_uint8


def random_inception_weights(path: Path) -> None:
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    class RandomInit(fe.FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):
            return None

    torch.manual_seed(0)
    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}):
        net = RandomInit("random", ["2048"])
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    torch.save(net.state_dict(), path)


class UInt8Set(Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


class LookupGenerator(nn.Module):
    def __init__(self, images):
        super().__init__()
        self.register_buffer("images", images)

    def forward(self, z):
        return self.images[z[:, 0].long()]


def images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.avg_pool2d(torch.rand(n, 3, 32, 32, generator=g) * 2 - 1, 3, stride=1, padding=1).mul(2).clamp(-1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_samples", type=int, default=32, help="generated and real images (each)")
    parser.add_argument("--weights", default=None, help="InceptionV3 weights; default: a random stand-in")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3, help="each timing is the best of this many runs")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: CPU time of this process (use on a shared machine, where wall time measures the load)")
    args = parser.parse_args()
    import torch_fidelity

    n, device = args.num_samples, torch.device(args.device)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    work = Path(tempfile.mkdtemp(prefix="gan_eval_bench_"))
    weights = args.weights
    if weights is None:
        weights = str(work / "random-inception.pth")
        random_inception_weights(Path(weights))
    fakes, reals = images(n, 1), images(n, 2)
    settings = ImageMetricSettings(is_splits=min(10, n // 2), kid_subset_size=min(1000, n))
    reference = ImageReference(TensorDataset(reals, torch.zeros(n)), {"type": "benchmark"})
    generator, latents = LookupGenerator(fakes).to(device), lambda k, g: torch.arange(k, dtype=torch.float32, device=device)[:, None]

    def ours(cache_dir: Path, evaluator: GeneratorEvaluator | None = None):
        evaluator = evaluator or GeneratorEvaluator(reference, n, feature_extractor_weights=weights, cache_dir=str(cache_dir),
                                                    batch_size=args.batch_size, settings=settings)
        evaluator.extractor(device)  # building Inception is a one-off per run, timed separately
        start = clock()
        scores, _ = evaluator.evaluate(generator, latents, device)
        return clock() - start, scores, evaluator

    def theirs(cache: bool):
        start = clock()
        scores = torch_fidelity.calculate_metrics(
            input1=UInt8Set(to_uint8(fakes)), input2=UInt8Set(to_uint8(reals)), input2_cache_name="bench-real" if cache else None,
            cache_root=str(work / "fidelity_cache"), cache=cache, cuda=device.type == "cuda",
            isc=True, fid=True, kid=True, prc=True, feature_extractor="inception-v3-compat", feature_extractor_weights_path=weights,
            isc_splits=settings.is_splits, kid_subset_size=settings.kid_subset_size, batch_size=args.batch_size,
            save_cpu_ram=True, verbose=False,
        )
        return clock() - start, scores

    start = time.perf_counter()
    GeneratorEvaluator(reference, n, feature_extractor_weights=weights).extractor(device)
    build = time.perf_counter() - start

    import shutil

    cold_ours = cold_theirs = warm_memory = warm_disk = warm_theirs = float("inf")
    for _ in range(args.repeats):  # best of N: the machine may be shared
        shutil.rmtree(work / "cache", ignore_errors=True)
        shutil.rmtree(work / "fidelity_cache", ignore_errors=True)
        seconds, scores, evaluator = ours(work / "cache")
        cold_ours = min(cold_ours, seconds)
        warm_memory = min(warm_memory, ours(work / "cache", evaluator)[0])  # the next evaluation of the same run
        warm_disk = min(warm_disk, ours(work / "cache")[0])  # the next run
        seconds, reference_scores = theirs(cache=False)
        cold_theirs = min(cold_theirs, seconds)
        theirs(cache=True)  # fills torch-fidelity's cache
        warm_theirs = min(warm_theirs, theirs(cache=True)[0])

    cpu = f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({cpu})"
    print(f"device: {where}; {n} generated + {n} real images, 32x32 -> 299x299, batch {args.batch_size}, best of {args.repeats}, {args.clock} time")
    print(f"Inception construction (once per run): {build:.2f} s")
    print(f"{'':34}{'gan_lightning':>14}{'torch-fidelity':>16}{'ratio':>8}")
    print(f"{'cold cache (real features computed)':34}{cold_ours:13.2f}s{cold_theirs:15.2f}s{cold_ours / cold_theirs:8.2f}")
    print(f"{'warm cache, next run (disk)':34}{warm_disk:13.2f}s{warm_theirs:15.2f}s{warm_disk / warm_theirs:8.2f}")
    print(f"{'warm cache, same run (memory)':34}{warm_memory:13.2f}s{'':16}{warm_memory / warm_theirs:8.2f}")
    print(f"FID ours {scores['fid']:.6g} / torch-fidelity {reference_scores['frechet_inception_distance']:.6g}; "
          f"KID {scores['kid']:.6g} / {reference_scores['kernel_inception_distance_mean']:.6g}")


if __name__ == "__main__":
    main()
