"""ModeCollapseMonitor: the signals on small tensors, the status rule, the warning, the actions and the checkpointed state."""

import io
import logging
import math
import warnings

import pytest
import torch
from lightning.pytorch import Callback
from torch import nn

from conftest import quiet_trainer, tiny_gan, tiny_ring
from gan_lightning.collapse import signals as cs
from gan_lightning.callbacks import ModeCollapseMonitor
from gan_lightning.data.mixtures import mixture_modes
from gan_lightning.tricks.discriminator_inputs import InstanceNoise
from gan_lightning.errors import ConfigurationError
from gan_lightning.metrics import save_module_file
from gan_lightning.regularizers import ModeSeekingRegularizer
from gan_lightning.collapse.remedies import AddInputTransform, AddRegularizer, ScaleLearningRate

MODES, STD = mixture_modes("ring8")


def ring_points(n: int, seed: int = 0, modes: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(modes, (n,), generator=g)
    return MODES[index] + STD * torch.randn(n, 2, generator=g)


# ---------------------------------------------------------------------- signals
def test_diversity_ratio_is_one_for_the_same_distribution_and_near_zero_when_collapsed():
    real = ring_points(400, seed=0)
    assert cs.diversity_ratio(real, real).item() == pytest.approx(1.0)
    assert cs.diversity_ratio(ring_points(400, seed=1), real).item() == pytest.approx(1.0, abs=0.05)
    collapsed = MODES[0] + STD * torch.randn(400, 2)
    assert cs.diversity_ratio(collapsed, real).item() < 0.02


def test_mean_pairwise_distance_of_two_points():
    assert cs.mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]])).item() == pytest.approx(5.0)


def test_coverage_is_one_when_every_real_sample_is_matched_and_near_zero_for_one_point():
    real = ring_points(300, seed=0)
    assert cs.coverage(real, real, k=5).item() == 1.0
    assert cs.coverage(ring_points(300, seed=1), real, k=5).item() > 0.9  # same distribution (Naeem et al.: ~1 - 2^-k)
    one_point = real[:1].expand(300, 2)
    assert cs.coverage(one_point, real, k=5).item() <= 6 / 300  # the point itself and its k neighbours at most
    assert cs.coverage(torch.full((300, 2), 5.0), real, k=5).item() == 0.0


def test_knn_radii_skip_the_sample_itself():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert cs.knn_radii(x, k=1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert cs.knn_radii(x, k=2).tolist() == [3.0, 2.0, 3.0, 6.0]


def test_mode_histogram_kl_and_modes_covered():
    reference = torch.full((8,), 1 / 8)
    assignments = cs.nearest_mode(ring_points(800), MODES, radius=cs.default_mode_radius(MODES))
    histogram = cs.mode_histogram(assignments, 8)
    assert histogram.sum().item() == pytest.approx(1.0)
    assert cs.histogram_kl(reference, reference).item() == pytest.approx(0.0, abs=1e-6)
    assert cs.histogram_kl(histogram, reference).item() < 0.02
    assert cs.modes_covered(histogram, reference).item() == 8
    half = cs.mode_histogram(cs.nearest_mode(ring_points(800, modes=4), MODES), 8)
    assert cs.modes_covered(half, reference).item() == 4
    assert cs.histogram_kl(half, reference).item() == pytest.approx(math.log(2), abs=0.05)
    one = cs.mode_histogram(torch.zeros(10, dtype=torch.long), 8)
    assert cs.histogram_kl(one, reference).item() == pytest.approx(math.log(8), abs=1e-4)
    # a few stray samples do not cover a mode: 1 % of the samples where the data has 12.5 %
    stray = cs.mode_histogram(torch.tensor([0] * 99 + [1]), 8)
    assert cs.modes_covered(stray, reference, min_fraction=0.1).item() == 1


def test_points_outside_the_mode_radius_are_not_assigned():
    radius = cs.default_mode_radius(MODES)
    assert radius == pytest.approx(math.sin(math.pi / 8), rel=1e-5)  # half the chord between neighbours
    index = cs.nearest_mode(torch.tensor([[0.0, 0.0], [1.0, 0.01]]), MODES, radius)
    assert index.tolist() == [-1, 0]
    assert cs.mode_histogram(torch.tensor([-1, -1]), 8).sum().item() == 0.0


def test_discriminator_wins_needs_both_sides():
    assert cs.discriminator_wins(torch.tensor(1.0), torch.tensor(0.995)).item()
    assert not cs.discriminator_wins(torch.tensor(1.0), torch.tensor(0.9)).item()


def test_gradient_norm_leaves_grad_untouched():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))
    assert cs.gradient_norm((w**2).sum() / 2, [w]).item() == pytest.approx(5.0)
    assert w.grad is None


# ---------------------------------------------------------------------- status rule
def test_status_rule():
    monitor = ModeCollapseMonitor(warmup_steps=100, patience=2)
    assert monitor.decide(50, ["modes_covered", "coverage"]) == "healthy"  # warm-up: no status
    assert monitor.decide(100, []) == "healthy"
    assert monitor.decide(150, ["d_wins"]) == "healthy"  # one dynamics signal: D winning while G still learns
    assert monitor.decide(200, ["d_wins", "g_grad_vanishing"]) == "suspect"  # D wins and G starves
    assert monitor.decide(300, ["d_wins", "g_grad_vanishing", "d_loss_low"]) == "suspect"  # never collapsed
    assert monitor.decide(400, ["diversity_ratio"]) == "suspect"  # one sample signal: suspect
    assert monitor.decide(500, ["diversity_ratio", "coverage"]) == "suspect"  # collapse level, patience 1 of 2
    assert monitor.decide(600, ["diversity_ratio", "coverage"]) == "collapsed"
    assert monitor.decide(700, ["coverage"]) == "suspect"
    assert monitor.decide(800, ["modes_covered"]) == "suspect"
    assert monitor.decide(900, ["modes_covered"]) == "suspect"  # one sample signal never collapses
    assert monitor.decide(1000, ["modes_covered", "mode_kl", "d_wins"]) == "suspect"
    assert monitor.decide(1100, ["modes_covered", "mode_kl"]) == "collapsed"
    assert monitor.decide(1200, []) == "healthy"


def test_fired_signals_compare_with_thresholds():
    monitor = ModeCollapseMonitor(modes_threshold=0.75, kl_threshold=0.2, diversity_threshold=0.5, coverage_threshold=0.25)
    healthy = {"modes_covered": 8, "modes_in_data": 8, "mode_kl": 0.05, "diversity_ratio": 0.9, "coverage": 0.8,
               "d_accuracy_real": 0.6, "d_accuracy_fake": 0.7, "d_loss": 1.2, "g_loss_change": 0.1,
               "g_grad_norm": 0.5, "g_grad_norm_max": 1.0}
    assert monitor.fired_signals(healthy) == []
    sick = {**healthy, "modes_covered": 5, "mode_kl": 0.7, "diversity_ratio": 0.3, "coverage": 0.1,
            "d_accuracy_real": 1.0, "d_accuracy_fake": 1.0, "d_loss": 0.01, "g_grad_norm": 0.001}
    assert monitor.fired_signals(sick) == [
        "modes_covered", "mode_kl", "diversity_ratio", "coverage", "d_wins", "d_loss_low", "g_grad_vanishing"
    ]
    assert monitor.fired_signals({"diversity_ratio": math.nan, "coverage": math.nan}) == []  # unavailable: silent
    # the KL threshold is a share of log(modes), the KL of a single mode: 0.2 x log 8 = 0.42, 0.2 x log 25 = 0.64
    assert monitor.fired_signals({"mode_kl": 0.5, "modes_covered": 25, "modes_in_data": 25}) == []
    assert monitor.fired_signals({"mode_kl": 0.5, "modes_covered": 8, "modes_in_data": 8}) == ["mode_kl"]


def test_warning_names_the_signals_and_a_remedy():
    monitor = ModeCollapseMonitor()
    monitor.fired = ["modes_covered", "coverage", "d_wins"]
    monitor.signal_history = [{"modes_covered": 2.0, "modes_in_data": 8.0, "coverage": 0.03,
                               "d_accuracy_real": 1.0, "d_accuracy_fake": 1.0}]
    with pytest.warns(UserWarning) as record:
        monitor._warn_change(1250, "suspect", "collapsed")
    text = str(record[0].message)
    assert "step 1250" in text and "suspect -> collapsed" in text
    assert "modes_covered = 2/8" in text and "coverage = 0.030" in text and "d_wins" in text
    assert "ModeSeekingRegularizer" in text and "PackedDiscriminator" in text and "InstanceNoise" in text


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"action": "rollback"}, "needs at least one remedy"),
        ({"action": "restart"}, "action must be"),
        ({"every_n_steps": 0}, "every_n_steps"),
        ({"num_samples": 5, "k": 5}, "num_samples"),
        ({"coverage_threshold": 2.0}, "coverage_threshold"),
        ({"kl_threshold": 1.5}, "share of log"),
        ({"classifier": "/nonexistent/classifier.pt"}, "classifier"),
    ],
)
def test_bad_options_say_how_to_fix_them(kwargs, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        ModeCollapseMonitor(**kwargs)


# ---------------------------------------------------------------------- remedies
def test_stateful_regularizers_are_refused_where_their_state_would_not_be_checkpointed():
    from gan_lightning.regularizers import LeCamRegularizer
    from gan_lightning.variants.gman import PerDiscriminatorRegularizer

    with pytest.raises(ConfigurationError, match="AddRegularizer cannot add LeCamRegularizer during training.*model.regularizers"):
        AddRegularizer(LeCamRegularizer())
    with pytest.raises(ConfigurationError, match="PerDiscriminatorRegularizer cannot wrap LeCamRegularizer"):
        PerDiscriminatorRegularizer(LeCamRegularizer())


def test_remedies_do_not_stack():
    module = tiny_gan()
    remedy = AddRegularizer(ModeSeekingRegularizer())
    remedy.apply(module)
    assert "already" in remedy.apply(module)
    assert sum(isinstance(r, ModeSeekingRegularizer) for r in module.regularizers) == 1
    noise = AddInputTransform(InstanceNoise(std=0.05))
    noise.apply(module)
    noise.apply(module)
    assert len(module.input_transforms) == 1


def test_scale_learning_rate_in_place_once():
    module = tiny_gan()
    trainer = quiet_trainer(max_steps=1)
    trainer.fit(module, tiny_ring())
    opt_d = trainer.optimizers[1]
    before = opt_d.param_groups[0]["lr"]
    remedy = ScaleLearningRate("discriminator", 0.5)
    remedy.apply(module)
    remedy.apply(module)
    assert opt_d.param_groups[0]["lr"] == pytest.approx(before * 0.5)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(before)
    restored = torch.optim.Adam(module.discriminator.parameters())
    restored.load_state_dict(opt_d.state_dict())  # the marker travels with the optimizer state (resume, rollback)
    assert any(k.startswith("gan_lightning_lr_scaled") for k in restored.param_groups[0])
    with pytest.raises(ConfigurationError):
        ScaleLearningRate("critic")


# ---------------------------------------------------------------------- training runs
class RingGenerator(nn.Module):
    """Maps z to the ring8 mixture itself (healthy), or to one mode once ``collapsed`` is set."""

    latent_dim = 4

    def __init__(self):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(2))
        self.collapsed = False

    def forward(self, z):
        angle = torch.atan2(z[:, 1], z[:, 0])
        index = ((angle + math.pi) / (2 * math.pi) * 8).long().clamp(0, 7)
        if self.collapsed:
            index = torch.zeros_like(index)
        return MODES.to(z.device)[index] + STD * z[:, 2:4] + self.shift


class CollapseAt(Callback):
    """Collapse the RingGenerator from generator step ``step`` on (runs before the monitor in the callback list)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            pl_module.generator.collapsed = True


def ring_gan(**kwargs):
    return tiny_gan(generator=RingGenerator(), generator_optimizer=lambda p: torch.optim.SGD(p, lr=0.0), **kwargs)


def monitor(**kwargs):
    kwargs = {"every_n_steps": 10, "num_samples": 200, "warmup_steps": 0, "patience": 1, "grad_batch_size": 16, **kwargs}
    return ModeCollapseMonitor(**kwargs)


def test_warn_action_flags_the_collapse_and_training_continues():
    mon = monitor()
    trainer = quiet_trainer(max_steps=60, callbacks=[CollapseAt(30), mon])
    with pytest.warns(UserWarning, match="-> collapsed.*modes_covered = 1/8"):
        trainer.fit(ring_gan(), tiny_ring())
    assert trainer.global_step == 60
    codes = dict(mon.history)
    assert codes[10] == codes[20] == 0 and codes[30] == codes[60] == 2
    assert mon.signal_history[0]["modes_covered"] == 8 and mon.signal_history[-1]["modes_covered"] == 1


def test_status_changes_are_logged_once_each_even_with_python_warnings_silenced(caplog, monkeypatch):
    # the gan_lightning logger prints by itself when the application configured no logging (then it does not
    # propagate): listen on it directly
    package_logger = logging.getLogger("gan_lightning")
    monkeypatch.setattr(package_logger, "propagate", False)
    package_logger.addHandler(caplog.handler)
    mon = monitor()
    trainer = quiet_trainer(max_steps=60, callbacks=[CollapseAt(30), mon])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PYTHONWARNINGS=ignore
            trainer.fit(ring_gan(), tiny_ring())
    finally:
        package_logger.removeHandler(caplog.handler)
    records = [r for r in caplog.records if r.name == "gan_lightning.collapse.monitor"]
    assert len(records) == 1, [r.getMessage() for r in records]  # checks at 30, 40, 50, 60 all collapsed: one change
    assert records[0].levelno == logging.WARNING
    assert "generator step 30: status healthy -> collapsed" in records[0].getMessage()


def test_gan_lightning_logger_prints_to_the_console_unless_logging_is_configured(monkeypatch):
    from gan_lightning.runtime.console import set_up_logger

    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # a script that configured no logging
    alone = set_up_logger("gan_lightning_test_alone")
    assert alone.level == logging.INFO and not alone.propagate
    assert [type(h) for h in alone.handlers] == [logging.StreamHandler]
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.NullHandler()])  # an application that did
    configured = set_up_logger("gan_lightning_test_configured")
    assert configured.propagate and not configured.handlers


def test_stop_action_stops_training_early():
    mon = monitor(action="stop")
    trainer = quiet_trainer(max_steps=100, callbacks=[CollapseAt(30), mon])
    with pytest.warns(UserWarning, match="stopping training at generator step 30"):
        trainer.fit(ring_gan(), tiny_ring())
    assert trainer.global_step == 30


class CheckRollback(Callback):
    """Right after the monitor rolls back, the module must equal the kept healthy state (in memory, or the file)."""

    def __init__(self, mon, file=None):
        self.mon, self.file, self.seen, self.checked = mon, file, 0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.mon.rollbacks > self.seen:
            self.seen = self.mon.rollbacks
            if self.file is None:
                saved = self.mon.rollback.healthy_state
            else:
                checkpoint = torch.load(self.file, weights_only=True)
                saved = {"step": checkpoint["global_step"], "module": checkpoint["state_dict"],
                         "optimizers": checkpoint["optimizer_states"]}
            assert saved["step"] == 20
            for key, value in pl_module.state_dict().items():
                assert torch.equal(value, saved["module"][key]), key
            saved_opt = saved["optimizers"][1]["state"]
            for index, state in trainer.optimizers[1].state_dict()["state"].items():
                assert torch.equal(state["exp_avg"], saved_opt[index]["exp_avg"])
            self.checked += 1


def test_rollback_restores_the_healthy_state_and_applies_the_remedy_once():
    mon = monitor(action="rollback", remedies=[AddRegularizer(ModeSeekingRegularizer())], max_rollbacks=2)
    check = CheckRollback(mon)
    module = ring_gan()
    trainer = quiet_trainer(max_steps=60, callbacks=[CollapseAt(30), mon, check])
    with pytest.warns(UserWarning, match="rolled back at generator step 30 to the healthy state of step 20"):
        trainer.fit(module, tiny_ring())
    assert check.checked == 2 and mon.rollbacks == 2  # the generator stays collapsed: rolled back twice, then warned
    assert trainer.global_step == 60  # the step counter is not rewound
    assert sum(isinstance(r, ModeSeekingRegularizer) for r in module.regularizers) == 1
    assert mon.remedies_applied and mon.last_healthy_step == 20


def test_rollback_from_the_healthy_checkpoint_file_when_no_copy_is_in_memory(tmp_path):
    # keep_healthy_state=False: only last_healthy.ckpt holds the healthy state, as after a resume
    mon = monitor(action="rollback", remedies=[ScaleLearningRate("discriminator", 0.5)], max_rollbacks=1,
                  keep_healthy_state=False, save_healthy_checkpoint=True)
    check = CheckRollback(mon, file=tmp_path / "checkpoints" / "last_healthy.ckpt")
    trainer = quiet_trainer(max_steps=40, callbacks=[CollapseAt(30), mon, check], default_root_dir=tmp_path)
    with pytest.warns(UserWarning, match="rolled back at generator step 30 to the healthy state of step 20"):
        trainer.fit(ring_gan(), tiny_ring())
    assert check.checked == 1 and mon.rollbacks == 1
    assert mon.rollback.healthy_state is None  # the file's state is not cached: a later rollback reads the newer file
    checkpoint = torch.load(tmp_path / "checkpoints" / "last_healthy.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 20 and not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_state_dict_round_trip_loads_with_weights_only(tmp_path):
    mon = monitor()
    trainer = quiet_trainer(max_steps=40, callbacks=[CollapseAt(30), mon], enable_checkpointing=False)
    with pytest.warns(UserWarning):
        trainer.fit(ring_gan(), tiny_ring())
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    state = checkpoint["callbacks"]["ModeCollapseMonitor"]
    buffer = io.BytesIO()
    torch.save(mon.state_dict(), buffer)
    buffer.seek(0)
    fresh = ModeCollapseMonitor()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.history == mon.history == [(10, 0), (20, 0), (30, 2), (40, 2)]
    assert fresh.status == "collapsed" and fresh.last_healthy_step == 20 and fresh.last_checked == 40
    assert fresh.consecutive == mon.consecutive and fresh.max_grad_norm == pytest.approx(mon.max_grad_norm)
    assert state["status"] == 2


class ConstantGenerator(nn.Module):
    """Every latent gives the same (learnable) point: total collapse."""

    latent_dim = 2

    def __init__(self):
        super().__init__()
        self.point = nn.Parameter(torch.tensor([1.0, 0.0]))

    def forward(self, z):
        return self.point.expand(z.shape[0], 2) + 0 * z[:, :1]


def test_tiny_fit_with_a_constant_generator_is_flagged_and_logged():
    logged = {}

    class Capture(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            logged.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("collapse/")})

    mon = ModeCollapseMonitor(every_n_steps=10, num_samples=100, warmup_steps=10, patience=2, grad_batch_size=8)
    trainer = quiet_trainer(max_steps=40, callbacks=[mon, Capture()])
    with pytest.warns(UserWarning, match="collapsed"):
        trainer.fit(tiny_gan(generator=ConstantGenerator()), tiny_ring())
    assert [code for _, code in mon.history] == [1, 2, 2, 2]  # warm-up ends at 10: suspect, then collapsed
    assert {"modes_covered", "diversity_ratio", "coverage"} <= set(mon.fired)
    assert logged["collapse/status"] == 2.0 and logged["collapse/diversity_ratio"] < 1e-6
    assert logged["collapse/modes_covered"] <= 1


class NearestMode(nn.Module):
    """A "classifier" of the ring's modes: logits = minus the distance to each mode."""

    def __init__(self):
        super().__init__()
        self.register_buffer("modes", MODES.clone())

    def forward(self, x):
        return -torch.cdist(x, self.modes)


class Double(nn.Module):
    def forward(self, x):
        return 2 * x


def test_classifier_and_feature_extractor_from_files(tmp_path, monkeypatch):
    save_module_file(NearestMode(), tmp_path / "classifier.pt")
    save_module_file(Double(), tmp_path / "features.pt")
    monkeypatch.setenv("GAN_LIGHTNING_TRUSTED_MODULES", "test_mode_collapse")  # where NearestMode and Double live
    mon = ModeCollapseMonitor(every_n_steps=10, num_samples=100, warmup_steps=0, classifier=str(tmp_path / "classifier.pt"),
                              feature_extractor=str(tmp_path / "features.pt"), grad_batch_size=0)
    trainer = quiet_trainer(max_steps=10, callbacks=[mon])
    trainer.fit(ring_gan(), tiny_ring())
    values = mon.signal_history[-1]
    assert values["modes_covered"] == 8 and values["mode_kl"] < 0.2
    assert 0.8 < values["diversity_ratio"] < 1.2 and "g_grad_norm" not in values


def test_inception_features_for_images_and_a_clear_error_otherwise(tmp_path):
    from gan_lightning.data import DigitsDataModule
    from gan_lightning.metrics.features import InceptionV3Features
    from gan_lightning.networks import DCGANDiscriminator, DCGANGenerator
    from test_metrics_image import save_random_inception_weights  # the real architecture, random weights (offline)

    weights = tmp_path / "inception.pth"
    save_random_inception_weights(weights)
    mon = ModeCollapseMonitor(every_n_steps=2, num_samples=8, k=2, warmup_steps=0, grad_batch_size=0,
                              feature_extractor="inception", feature_extractor_weights=str(weights))
    assert mon.feature_extractor == "inception"  # nothing is loaded (or downloaded) before the first check
    gan = tiny_gan(generator=DCGANGenerator(latent_dim=8, image_size=8, channels=1, width=8),
                   discriminator=DCGANDiscriminator(image_size=8, channels=1, width=8))
    quiet_trainer(max_steps=2, callbacks=[mon]).fit(gan, DigitsDataModule(image_size=8, batch_size=8))
    assert isinstance(mon.feature_extractor, InceptionV3Features)
    assert mon._reference["features"].shape == (8, 2048)  # pool3 features of the real batch
    assert math.isfinite(mon.signal_history[-1]["diversity_ratio"]) and 0 <= mon.signal_history[-1]["coverage"] <= 1

    with pytest.raises(ConfigurationError, match="takes images"):
        quiet_trainer(max_steps=2, callbacks=[ModeCollapseMonitor(
            every_n_steps=2, num_samples=8, k=2, grad_batch_size=0, feature_extractor="inception",
            feature_extractor_weights=str(weights))]).fit(tiny_gan(), tiny_ring())
    with pytest.raises(ConfigurationError, match="does not exist"):
        quiet_trainer(max_steps=2, callbacks=[ModeCollapseMonitor(
            every_n_steps=2, num_samples=8, k=2, grad_batch_size=0, feature_extractor="inception",
            feature_extractor_weights=str(tmp_path / "missing.pth"))]).fit(gan, DigitsDataModule(image_size=8, batch_size=8))


def test_rollback_with_remedies_from_yaml(tmp_path):
    """The ring8_collapse experiment with its commented-out rollback lines switched on builds through the CLI."""
    import yaml

    from conftest import ROOT
    from gan_lightning.commands.cli import GANLightningCLI

    config = yaml.safe_load((ROOT / "experiments" / "ring8_collapse.yaml").read_text())
    entry = next(c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("ModeCollapseMonitor"))
    entry["init_args"].update(action="rollback", remedies=[
        {"class_path": "gan_lightning.collapse.remedies.ScaleLearningRate", "init_args": {"network": "generator", "factor": 0.1}},
        {"class_path": "gan_lightning.collapse.remedies.AddRegularizer",
         "init_args": {"regularizer": {"class_path": "gan_lightning.regularizers.ModeSeekingRegularizer"}}},
    ])
    path = tmp_path / "rollback.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = GANLightningCLI(args=["--config", str(path), "--trainer.logger=false"], run=False, save_config_callback=None)
    mon = next(c for c in cli.trainer.callbacks if isinstance(c, ModeCollapseMonitor))
    assert mon.action == "rollback" and mon.keep_healthy_state
    assert isinstance(mon.remedies[0], ScaleLearningRate) and mon.remedies[0].factor == 0.1
    assert isinstance(mon.remedies[1], AddRegularizer) and isinstance(mon.remedies[1].regularizer, ModeSeekingRegularizer)


def test_reference_set_is_a_fixed_random_subset_not_the_first_samples():
    data = tiny_ring(num_samples=640)
    data.setup("fit")
    indices = data.reference_indices(100)
    assert indices == data.reference_indices(100) and len(set(indices)) == 100
    assert indices != list(range(100)) and max(indices) >= 100  # a sorted folder's first 100 could be one class
    torch.testing.assert_close(data.real_batch(100), torch.stack([data.train_dataset[i][0] for i in indices]))


def test_mgan_dynamics_read_the_adversarial_column_and_an_infinite_norm_is_not_a_maximum():
    from gan_lightning.variants.mgan import MGANDiscriminator, MGANLoss, MultiGenerator
    from gan_lightning.losses import NonSaturatingLoss

    torch.manual_seed(0)
    gan = tiny_gan(generator=MultiGenerator(num_generators=4, latent_dim=2, output_dim=2, hidden_dims=[16, 16]),
                   discriminator=MGANDiscriminator(num_generators=4, input_dim=2, hidden_dims=[16]),
                   loss=MGANLoss(num_generators=4))
    mon = ModeCollapseMonitor(every_n_steps=5, num_samples=50, warmup_steps=0, grad_batch_size=8)
    quiet_trainer(max_steps=5, callbacks=[mon]).fit(gan, tiny_ring(batch_size=32))
    last = gan.last_step_outputs
    expected = NonSaturatingLoss().discriminator_accuracy(last.real_scores[:, 0], last.fake_scores[:, 0])
    values = mon.signal_history[-1]
    assert values["d_accuracy_real"] == pytest.approx(float(expected[0]))
    assert values["d_accuracy_fake"] == pytest.approx(float(expected[1]))
    # an overflowed gradient norm (inf) does not become the maximum every later norm is compared with
    before = mon.max_grad_norm
    mon._generator_gradient_norm = lambda pl_module: math.inf
    mon._dynamics(gan)
    assert mon.max_grad_norm == before and math.isfinite(before)


def test_one_signal_table_entry_is_all_a_new_signal_needs(monkeypatch):
    """A signal added to ``SIGNALS`` fires, counts in the status rule by its source and is described in the alarm."""
    from gan_lightning.collapse import monitor as monitor_module

    extra = monitor_module.Signal("sharpness", "sample", 0.3, lambda v, t: v.get("sharpness", math.nan) < t,
                                  lambda v, t: f"sharpness = {v['sharpness']:.2f} (< {t})")
    monkeypatch.setattr(monitor_module, "SIGNALS", (*monitor_module.SIGNALS, extra))
    monitor = ModeCollapseMonitor(warmup_steps=0, patience=1)
    assert monitor.thresholds["sharpness"] == 0.3
    values = {"diversity_ratio": 0.9, "coverage": 0.8, "sharpness": 0.1}
    assert monitor.fired_signals(values) == ["sharpness"]
    assert monitor.decide(100, ["sharpness"]) == "suspect"  # a sample signal alone: suspect
    assert monitor.decide(200, ["sharpness", "coverage"]) == "collapsed"  # two sample signals: collapse level
    monitor.fired, monitor.signal_history = ["sharpness"], [values]
    with pytest.warns(UserWarning) as record:
        monitor._warn_change(300, "healthy", "suspect")
    text = str(record[0].message)
    assert "sharpness = 0.10 (< 0.3)" in text and "ModeSeekingRegularizer" in text  # a sample signal's remedies
