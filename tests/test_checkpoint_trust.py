"""Loading a checkpoint (or any other file) never runs code from it: crafted files are refused, nothing in them runs.

Each crafted file would create a marker file if any of it ran; every test checks that the marker never appears.
"""

import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from conftest import ROOT, run_cli, tiny_gan
from gan_lightning import GANModule
from gan_lightning.callbacks import ModeCollapseMonitor
from gan_lightning.commands.cli import main
from gan_lightning.errors import CheckpointError, ConfigurationError, GANLightningError, UnsafeCheckpointError
from gan_lightning.metrics import load_module_file, save_module_file
from gan_lightning.metrics.reference import parse_reference
from gan_lightning.networks import MLPGenerator
from gan_lightning.collapse.remedies import ScaleLearningRate
from gan_lightning.runtime.trust import TRUSTED_MODULES_ENV, TrustedModules

#: A tiny ring8 run; the same options resume it.
FIT_ARGS = [
    "--config", str(ROOT / "experiments/ring8.yaml"),
    "--model.generator.init_args.hidden_dims=[8]", "--model.discriminator.init_args.hidden_dims=[8]",
    "--data.init_args.num_samples=200",
]


class ShellPayload:
    """Unpickling this runs a shell command (the classic pickle exploit)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class ExecPayload:
    """Unpickling this runs Python code that writes a file."""

    def __init__(self, marker: Path):
        self.code = f"open({str(marker)!r}, 'w').write('ran')"

    def __reduce__(self):
        return exec, (self.code,)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A real run directory written once by ``fit`` (4 generator steps): checkpoints/last.ckpt and config.yaml."""
    where = tmp_path_factory.mktemp("real_run")
    assert main(["fit", *FIT_ARGS, "--trainer.max_steps=4", "--trainer.logger.init_args.save_dir", str(where / "runs")]) == 0
    run = where / "runs" / "ring8" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "config.yaml").is_file()
    return run


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists(), "code from a crafted file ran"


def _checkpoint(real_run) -> dict:
    return torch.load(real_run / "checkpoints" / "last.ckpt", weights_only=True)


def _write(checkpoint: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def pickle_payload(real_run, path: Path, marker: Path) -> Path:
    """The run's last.ckpt with one extra top-level entry whose unpickling runs ``touch MARKER``."""
    checkpoint = _checkpoint(real_run)
    checkpoint["extra"] = ShellPayload(f"touch {marker}")
    return _write(checkpoint, path)


def foreign_class_path(real_run, path: Path, marker: Path) -> Path:
    """The run's last.ckpt whose generator is ``subprocess.Popen("touch MARKER", shell=True)``."""
    checkpoint = _checkpoint(real_run)
    checkpoint["hyper_parameters"]["generator"] = {
        "class_path": "subprocess.Popen", "init_args": {"args": f"touch {marker}", "shell": True}
    }
    return _write(checkpoint, path)


CRAFTED = {"pickle payload": (pickle_payload, "cannot be loaded safely"),
           "foreign class path": (foreign_class_path, "'subprocess.Popen' at model.generator.class_path")}


def _error_of(argv, capsys) -> str:
    """The one ``error: ...`` line of a command that must exit with code 2 (other stderr lines are notes)."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and sum("error" in line.lower() for line in lines) == 1, err
    assert "Traceback" not in err
    return lines[-1]


def _command(name: str, ckpt: Path, tmp_path: Path) -> list[str]:
    if name == "sample":
        return ["sample", "--ckpt_path", str(ckpt), "--output", str(tmp_path / "s.pt")]
    if name == "evaluate":
        return ["evaluate", "--ckpt_path", str(ckpt), "--reference", "ring8", "--output", str(tmp_path / "e.json")]
    runs = ["--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--trainer.max_steps=8"]
    if name == "fit --ckpt_path FILE":
        return ["fit", *FIT_ARGS, *runs, "--ckpt_path", str(ckpt)]
    return ["fit", *FIT_ARGS, *runs, "--ckpt_path", "last"]


COMMANDS = ["sample", "evaluate", "fit --ckpt_path FILE", "fit --ckpt_path last"]


@pytest.mark.parametrize("kind", list(CRAFTED))
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_a_crafted_checkpoint_and_runs_nothing(real_run, tmp_path, marker, capsys, command, kind):
    make, message = CRAFTED[kind]
    # where `--ckpt_path last` finds it: <save_dir>/ring8/version_0/checkpoints/last.ckpt
    ckpt = make(real_run, tmp_path / "runs" / "ring8" / "version_0" / "checkpoints" / "last.ckpt", marker)
    err = _error_of(_command(command, ckpt, tmp_path), capsys)
    assert message in err and str(ckpt) in err
    if kind == "pickle payload":
        assert "posix.system" in err and "may be malicious" in err and "nothing in it was run" in err
    else:
        assert "--trusted_modules subprocess" in err and f"{TRUSTED_MODULES_ENV}=subprocess" in err
        assert "nothing was imported" in err
    assert not (tmp_path / "s.pt").exists() and not (tmp_path / "e.json").exists()


def test_the_command_line_refuses_as_a_user_sees_it(real_run, tmp_path, marker):
    """A real process, as in the report: exit code 2, one ``error:`` line, no traceback, no samples, no marker."""
    ckpt = pickle_payload(real_run, tmp_path / "downloaded.ckpt", marker)
    result = run_cli("sample", "--ckpt_path", str(ckpt), "--output", str(tmp_path / "s.png"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "cannot be loaded safely" in result.stderr and not (tmp_path / "s.png").exists()


@pytest.mark.parametrize("payload", ["os.system", "builtins.exec"])
def test_other_pickle_payloads_are_refused_with_the_global_they_name(real_run, tmp_path, marker, payload):
    checkpoint = _checkpoint(real_run)
    checkpoint["optimizer_states"][0]["extra"] = ShellPayload(f"touch {marker}") if payload == "os.system" else ExecPayload(marker)
    ckpt = _write(checkpoint, tmp_path / "x.ckpt")
    with pytest.raises(UnsafeCheckpointError, match="global posix.system" if payload == "os.system" else "global exec"):
        GANModule.load_from_checkpoint(ckpt)


@pytest.mark.parametrize(
    "where, value, key",
    [
        (("generator",), {"class_path": "subprocess.Popen", "init_args": {"args": "true"}}, "model.generator.class_path"),
        (("generator", "init_args", "hidden_dims"), [8, {"class_path": "os.system", "init_args": {"command": "true"}}],
         "model.generator.init_args.hidden_dims[1].class_path"),
        (("regularizers",), [{"class_path": "gan_lightning.regularizers.R1Penalty",
                              "init_args": {"gamma": {"class_path": "subprocess.call", "init_args": {"args": "true"}}}}],
         "model.regularizers[0].init_args.gamma.class_path"),
        (("loss",), "subprocess.getoutput", "model.loss"),  # a plain string that names an importable callable
        (("generator_optimizer",), {"class_path": "torch.hub.load", "init_args": {"repo_or_dir": "x/y"}},
         "model.generator_optimizer.class_path"),  # torch's own code loaders are not trusted by default
        (("_instantiator",), "os.system", "model._instantiator"),
    ],
)
def test_foreign_class_paths_anywhere_in_the_hparams_are_refused_before_import(real_run, tmp_path, where, value, key):
    checkpoint = _checkpoint(real_run)
    node = checkpoint["hyper_parameters"]
    for name in where[:-1]:
        node = node[name]
    node[where[-1]] = value
    ckpt = _write(checkpoint, tmp_path / "x.ckpt")
    with pytest.raises(UnsafeCheckpointError, match=key.replace("[", r"\[").replace("]", r"\]")) as info:
        GANModule.load_from_checkpoint(ckpt)
    assert isinstance(info.value, CheckpointError) and isinstance(info.value, GANLightningError)


def test_a_foreign_datamodule_class_in_the_checkpoint_is_refused(real_run, tmp_path, capsys):
    checkpoint = _checkpoint(real_run)
    checkpoint["datamodule_hyper_parameters"]["_class_path"] = "os.system"
    ckpt = _write(checkpoint, tmp_path / "x.ckpt")
    assert "'os.system' at data._class_path" in _error_of(_command("fit --ckpt_path FILE", ckpt, tmp_path), capsys)


def test_load_from_checkpoint_refuses_both_kinds_in_python(real_run, tmp_path, marker):
    for kind, (make, message) in CRAFTED.items():
        ckpt = make(real_run, tmp_path / "x.ckpt", marker)
        with pytest.raises(UnsafeCheckpointError, match=message):
            GANModule.load_from_checkpoint(ckpt)
    with pytest.raises(ConfigurationError, match="weights_only=True only"):
        GANModule.load_from_checkpoint(real_run / "checkpoints" / "last.ckpt", weights_only=False)
    # keyword arguments replace what the checkpoint records: the foreign generator is never rebuilt
    model = GANModule.load_from_checkpoint(ckpt, generator=MLPGenerator(latent_dim=2, output_dim=2, hidden_dims=[8]))
    assert model.generate(3).shape == (3, 2)


def test_real_checkpoints_still_load(real_run, tmp_path):
    model = GANModule.load_from_checkpoint(real_run / "checkpoints" / "last.ckpt")
    assert model.generate(5, seed=1).shape == (5, 2)
    assert main(["sample", "--ckpt_path", str(real_run / "checkpoints" / "last.ckpt"), "--output", str(tmp_path / "s.pt")]) == 0


def test_own_modules_are_trusted_with_the_option_or_the_environment_variable(real_run, tmp_path, monkeypatch, capsys):
    """A network from the user's own package (here tests/gl_testing.py): refused by default, loaded when trusted."""
    checkpoint = _checkpoint(real_run)
    checkpoint["hyper_parameters"]["generator"]["class_path"] = "gl_testing.TrustedGenerator"
    ckpt = _write(checkpoint, tmp_path / "runs" / "ring8" / "version_0" / "checkpoints" / "last.ckpt")
    err = _error_of(["sample", "--ckpt_path", str(ckpt), "--output", str(tmp_path / "a.pt")], capsys)
    assert "'gl_testing.TrustedGenerator' at model.generator.class_path" in err
    assert "--trusted_modules gl_testing" in err and f"{TRUSTED_MODULES_ENV}=gl_testing" in err
    assert main(["sample", "--ckpt_path", str(ckpt), "--output", str(tmp_path / "a.pt"), "--trusted_modules", "gl_testing"]) == 0
    monkeypatch.setenv(TRUSTED_MODULES_ENV, "other_pkg, gl_testing")
    assert main(["sample", "--ckpt_path", str(ckpt), "--output", str(tmp_path / "b.pt")]) == 0
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True), torch.load(tmp_path / "b.pt", weights_only=True))
    assert type(GANModule.load_from_checkpoint(ckpt).generator).__name__ == "TrustedGenerator"
    # fit: the environment variable is enough to resume a run of the user's own network
    runs = ["--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--trainer.max_steps=6"]
    assert main(["fit", *FIT_ARGS, "--model.generator.class_path=gl_testing.TrustedGenerator", *runs, "--ckpt_path", "last"]) == 0
    # (the copied run's checkpoint callback writes last-v1.ckpt beside the file it did not write itself)
    assert 6 in [torch.load(p, weights_only=True)["global_step"] for p in ckpt.parent.glob("last*.ckpt")]


def test_trusted_modules_decide_by_the_most_specific_entry(monkeypatch):
    monkeypatch.delenv(TRUSTED_MODULES_ENV, raising=False)
    default = TrustedModules()
    assert default.allows("torch.nn.Linear") and default.allows("gan_lightning.networks.MLPGenerator")
    assert default.allows("torchvision.models.resnet18")
    assert not default.allows("torch.hub.load") and not default.allows("torch.jit.load") and not default.allows("os.system")
    assert not default.allows("torchvision_evil.X") and not default.allows("gan_lightning_x.Y")
    assert TrustedModules("torch.hub").allows("torch.hub.load") and TrustedModules(["a.b"]).allows("a.b.C")
    assert not TrustedModules("a.b").allows("a.c")
    with pytest.raises(ConfigurationError, match="not a module name"):
        TrustedModules("my pkg")
    monkeypatch.setenv(TRUSTED_MODULES_ENV, "os;rm")
    with pytest.raises(ConfigurationError, match=TRUSTED_MODULES_ENV):
        TrustedModules()


def test_the_run_config_beside_a_checkpoint_is_checked_before_fit_or_evaluate_import_it(real_run, tmp_path, marker, capsys):
    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    popen = {"class_path": "subprocess.Popen", "init_args": {"args": f"touch {marker}", "shell": True}}
    config["model"]["generator"] = popen
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    ckpt = run / "checkpoints" / "last.ckpt"
    # fit --ckpt_path without --config reads <run>/config.yaml
    assert "'subprocess.Popen' at model.generator.class_path" in _error_of(["fit", "--ckpt_path", str(ckpt)], capsys)
    # evaluate without --reference builds the run's datamodule from <run>/config.yaml
    config["data"] = popen
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    err = _error_of(["evaluate", "--ckpt_path", str(ckpt), "--output", str(tmp_path / "e.json")], capsys)
    assert "'subprocess.Popen' at data.class_path" in err and "config.yaml" in err


def test_fit_refuses_weights_only_false(real_run, tmp_path, capsys):
    argv = [*_command("fit --ckpt_path FILE", real_run / "checkpoints" / "last.ckpt", tmp_path), "--weights_only", "false"]
    assert "weights_only" in _error_of(argv, capsys)


def test_the_monitor_rollback_refuses_a_crafted_healthy_checkpoint(real_run, tmp_path, marker):
    pickle_payload(real_run, tmp_path / "checkpoints" / "last_healthy.ckpt", marker)
    monitor = ModeCollapseMonitor(every_n_steps=2, action="rollback", save_healthy_checkpoint=True,
                                  remedies=[ScaleLearningRate("discriminator", 0.5)])
    monitor.rollback.run_dir, monitor.last_healthy_step = tmp_path, 4
    with pytest.raises(UnsafeCheckpointError, match="healthy checkpoint .*posix.system"):
        monitor.rollback.load_checkpoint(tiny_gan())


class Features(nn.Module):
    def __init__(self, width: int = 3):
        super().__init__()
        self.linear = nn.Linear(2, width)

    def forward(self, x):
        return self.linear(x)


def test_network_files_hold_data_only(tmp_path, marker, monkeypatch):
    monkeypatch.delenv(TRUSTED_MODULES_ENV, raising=False)
    torch.manual_seed(0)
    net = Features(width=4)
    path = save_module_file(net, tmp_path / "features.pt", init_args={"width": 4})
    with pytest.raises(UnsafeCheckpointError, match="'test_checkpoint_trust.Features' at class_path.*--trusted_modules test_checkpoint_trust"):
        load_module_file(str(path))
    loaded = load_module_file(str(path), trusted_modules="test_checkpoint_trust")
    x = torch.randn(5, 2)
    assert torch.equal(loaded(x), net(x))
    # torchvision classes need no trust
    linear = save_module_file(nn.Linear(2, 3), tmp_path / "linear.pt", init_args={"in_features": 2, "out_features": 3})
    assert isinstance(load_module_file(str(linear)), nn.Linear)
    # the old formats are code: refused with how to convert them
    torch.save(net, tmp_path / "pickled.pt")
    with pytest.raises(UnsafeCheckpointError, match="save_module_file"):
        load_module_file(str(tmp_path / "pickled.pt"), trusted_modules="test_checkpoint_trust")
    # a crafted network file: a payload, or a foreign class
    torch.save({"format": "gan_lightning.module/1", "class_path": "torch.nn.Identity", "init_args": {},
                "state_dict": {}, "x": ShellPayload(f"touch {marker}")}, tmp_path / "payload.pt")
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        load_module_file(str(tmp_path / "payload.pt"))
    torch.save({"format": "gan_lightning.module/1", "class_path": "os.system", "init_args": {"command": f"touch {marker}"},
                "state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(UnsafeCheckpointError, match="'os.system' at class_path"):
        load_module_file(str(tmp_path / "foreign.pt"))


def test_real_features_files_and_inception_weights_are_read_with_weights_only(tmp_path, marker):
    torch.save({"format": 1, "features": {"pool": torch.zeros(2, 2)}, "x": ShellPayload(f"touch {marker}")},
               tmp_path / "real.pt")
    with pytest.raises(UnsafeCheckpointError, match="real-features file .*posix.system"):
        parse_reference(str(tmp_path / "real.pt"), (3, 8, 8))
    from gan_lightning.metrics.features import InceptionV3Features

    torch.save({"x": ShellPayload(f"touch {marker}")}, tmp_path / "inception.pth")  # torch-fidelity loads it itself
    with pytest.raises(UnsafeCheckpointError, match="InceptionV3 weights file .*posix.system"):
        InceptionV3Features(str(tmp_path / "inception.pth"))
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ  # forced for that load only


def test_an_hparams_file_is_plain_yaml_with_trusted_classes(real_run, tmp_path):
    hparams = tmp_path / "hparams.yaml"
    hparams.write_text("generator: {class_path: subprocess.Popen, init_args: {args: 'true'}}\n")
    with pytest.raises(UnsafeCheckpointError, match="hparams file"):
        GANModule.load_from_checkpoint(real_run / "checkpoints" / "last.ckpt", hparams_file=hparams)
    hparams.write_text("generator: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(CheckpointError, match="plain YAML"):
        GANModule.load_from_checkpoint(real_run / "checkpoints" / "last.ckpt", hparams_file=hparams)
