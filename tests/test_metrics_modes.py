"""Mode-coverage metrics (PacGAN/VEEGAN definitions) on hand-made point sets."""

import math

import torch

from gan_lightning.data import mixture_modes
from gan_lightning.metrics import mode_coverage


def test_all_modes_exactly_on_centres():
    modes, std = mixture_modes("ring8")
    points = modes.repeat(10, 1)  # 10 points on each of the 8 centres
    out = mode_coverage(points, modes, std)
    assert out["modes_captured"] == 8
    assert out["high_quality_percent"] == 100.0
    assert abs(out["reverse_kl"]) < 1e-12


def test_one_mode_only():
    modes, std = mixture_modes("grid25")
    points = modes[7] + std * torch.randn(100, 2, generator=torch.Generator().manual_seed(0)).clamp(-2, 2)
    out = mode_coverage(points, modes, std)
    assert out["modes_captured"] == 1
    assert out["high_quality_percent"] == 100.0
    assert math.isclose(out["reverse_kl"], math.log(25), rel_tol=1e-9)  # KL(delta || uniform over 25) = log 25


def test_off_mode_points_are_not_high_quality():
    modes, std = mixture_modes("ring8")
    on = modes[:4]  # 4 modes hit once each
    just_inside = modes[4] + torch.tensor([2.9 * std, 0.0])
    just_outside = modes[5] + torch.tensor([3.1 * std, 0.0])
    origin = torch.zeros(1, 2)
    points = torch.cat([on, just_inside[None], just_outside[None], origin, origin])
    out = mode_coverage(points, modes, std)
    assert out["modes_captured"] == 5
    assert math.isclose(out["high_quality_percent"], 100 * 5 / 8)
    assert math.isclose(out["reverse_kl"], math.log(8 / 5), rel_tol=1e-9)  # uniform over 5 of 8 modes


def test_unbalanced_histogram_reverse_kl():
    modes, std = mixture_modes("ring8")
    points = torch.cat([modes[0].repeat(3, 1), modes[1].repeat(1, 1)])
    p = torch.tensor([0.75, 0.25], dtype=torch.float64)
    expected = float((p * (p * 8).log()).sum())
    assert math.isclose(mode_coverage(points, modes, std)["reverse_kl"], expected, rel_tol=1e-12)


def test_no_high_quality_sample():
    modes, std = mixture_modes("ring8")
    out = mode_coverage(torch.full((10, 2), 5.0), modes, std)
    assert out["modes_captured"] == 0 and out["high_quality_percent"] == 0.0
    assert out["reverse_kl"] == math.inf
