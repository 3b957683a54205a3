"""``python -m gan_lightning sweep``: every grid combination x every seed as an ordinary ``fit`` run, on this machine
or as one Slurm job array; the same command again resumes it; ``sweep-report`` tables the results.

GAN results move with the random seed as much as with the method (Lucic et al. 2018, "Are GANs Created Equal? A
Large-Scale Study"), so a comparison needs several seeds and an error bar. Each run is ``python -m gan_lightning fit``
in its own process, with the same options, logs, checkpoints and evaluation as a run started by hand. Layout::

    <root>/<name>/sweep_plan.json            every planned run: combination, seed, fit options (Slurm tasks read it)
    <root>/<name>/<combination>/planned_config.yaml   the combination's resolved config when planned: its runs' --config
    <root>/<name>/<combination>/seed_<k>/    one run = its TensorBoard logger's version directory
        config.yaml  checkpoints/last.ckpt  events.out.tfevents.*  evaluation/step_*.json   (written by fit)
        run_record.json    written by the run itself once it has trained to its end (RunRecord callback)
        stdout.log  stderr.log   the output of every attempt (stderr.log has one header line per attempt)
        error.txt          the one-line error of the last attempt, when it failed
    <root>/<name>/report.{md,csv,json,png}   ``sweep-report``

A run is finished when it has ``run_record.json``; any other run is started again with ``--ckpt_path last`` (exact
resume from its ``last.ckpt``; a run that never reached a checkpoint starts over), so a sweep killed at any point
loses at most the steps since each run's last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import yaml

from gan_lightning.callbacks.run_record import RUN_RECORD
from gan_lightning.errors import ConfigurationError, GANLightningError
from gan_lightning.metrics.record import write_record

PLAN_FILE = "sweep_plan.json"
#: per combination: its resolved configuration at plan time, which its runs read instead of the experiment file
SNAPSHOT_FILE = "planned_config.yaml"
LOCK_FILE = ".sweep.lock"
ATTEMPT_HEADER = "=== gan_lightning sweep:"
NO_GRID_COMBINATION = "base"
LOG_FILES = ("stdout.log", "stderr.log")
#: options the sweep sets for every run; they are not part of a combination's identity
PER_RUN_KEYS = ("seed_everything", "trainer.default_root_dir", "trainer.logger.init_args.save_dir",
                "trainer.logger.init_args.name", "trainer.logger.init_args.version")
RUN_RECORD_CALLBACK = "gan_lightning.callbacks.run_record.RunRecord"
SLURM_DIR = Path(__file__).resolve().parents[2] / "scripts" / "slurm"


class SweepError(GANLightningError, RuntimeError):
    """A sweep that ran but did not finish every run, or whose directory is in use."""


# ----------------------------------------------------------------------------------------------- parsing the input
def parse_seeds(text: str) -> list[int]:
    """``"0-4"``, ``"0,2,5"``, ``"3"`` or a mix (``"0-2,7"``) -> sorted distinct seeds."""
    if not str(text).strip():
        raise ConfigurationError("--seeds is empty; give the seeds, e.g. --seeds 0-4, --seeds 0,2,5 or --seeds 3.")
    seeds: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not match:
            raise ConfigurationError(
                f"--seeds {text!r}: {part!r} is not a seed or a range; write e.g. --seeds 0-4, --seeds 0,2,5 or --seeds 3."
            )
        first, last = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if last < first:
            raise ConfigurationError(f"--seeds {text!r}: the range {part!r} is empty; write it low-high, e.g. {last}-{first}.")
        seeds.update(range(first, last + 1))
    return sorted(seeds)


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets and quotes: ``[32,32],[64,64]`` -> ``["[32,32]", "[64,64]"]``."""
    parts, depth, quote, current = [], 0, "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += char
    parts.append(current)
    return [p.strip() for p in parts]


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["model.loss=nonsaturating,hinge", "model.n_critic=1,5"]`` -> ``[(key, values), ...]`` in the given order."""
    grid: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().removeprefix("--")
        if not sep or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key):
            raise ConfigurationError(
                f"--grid {item!r}: write KEY=VALUE1,VALUE2,... with KEY a fit option such as model.loss "
                "(e.g. --grid model.loss=nonsaturating,hinge)."
            )
        parsed = _split_top_level(values)
        if not values.strip() or any(v == "" for v in parsed):
            raise ConfigurationError(f"--grid {item!r}: a value is empty; list the values after '=', separated by commas.")
        if len(set(parsed)) != len(parsed):
            raise ConfigurationError(f"--grid {item!r}: a value is listed twice.")
        if any(k == key for k, _ in grid):
            raise ConfigurationError(f"--grid {key}: the key is given twice; list all its values in one --grid.")
        grid.append((key, parsed))
    return grid


def _key_labels(keys: Sequence[str]) -> dict[str, str]:
    """The shortest dotted suffix of each key (``init_args`` left out) that no other key ends with."""
    parts = {k: [p for p in k.split(".") if p != "init_args"] for k in keys}
    labels = {}
    for key, own in parts.items():
        for n in range(1, len(own) + 1):
            label = ".".join(own[-n:])
            if all(".".join(other[-n:]) != label for k, other in parts.items() if k != key):
                break
        labels[key] = label
    return labels


def _value_label(value: str) -> str:
    """A filesystem-safe rendering of a value: class paths by their class name, no brackets or separators."""
    text = value.strip()
    if re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", text):
        text = text.rsplit(".", 1)[1]
    text = re.sub(r"[\[\]{}()'\" ]", "", text)
    text = re.sub(r"[^A-Za-z0-9._+-]", "_", text)
    return text.lstrip(".") or "_"


def combinations(grid: list[tuple[str, list[str]]]) -> list[tuple[str, dict[str, str]]]:
    """Every combination of the grid values, named ``label=value,label=value`` (unique, filesystem-safe)."""
    if not grid:
        return [(NO_GRID_COMBINATION, {})]
    labels = _key_labels([k for k, _ in grid])
    combos: list[dict[str, str]] = [{}]
    for key, values in grid:
        combos = [{**c, key: v} for c in combos for v in values]
    named: list[tuple[str, dict[str, str]]] = []
    seen: dict[str, int] = {}
    for combo in combos:
        name = ",".join(f"{labels[k]}={_value_label(v)}" for k, v in combo.items())
        if len(name) > 200:
            name = name[:180] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
        seen[name] = seen.get(name, 0) + 1
        named.append((name if seen[name] == 1 else f"{name}_{seen[name]}", combo))
    return named


def _one_line(err: BaseException) -> str:
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text if len(text) <= 400 else text[:397] + "..."


def resolve_fit_config(args: Sequence[str]) -> dict[str, Any]:
    """What ``fit`` would run with these options, parsed and instantiated (model, data, callbacks, logger) by the
    project's own LightningCLI parser, without building a Trainer or training. Raises on anything fit would reject."""
    from gan_lightning.commands.cli import GANLightningCLI

    class ParseOnlyCLI(GANLightningCLI):
        def _set_seed(self) -> None:  # the sweep process itself draws no random numbers
            pass

        def instantiate_classes(self) -> None:
            self.config_init = self.parser.instantiate_classes(self.config)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = ParseOnlyCLI(args=list(args), run=False, parser_kwargs={"exit_on_error": False})
    dump = yaml.safe_load(cli.parser.dump(cli.config, skip_link_targets=False, skip_none=False))
    dump.pop("config", None)
    return dump


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def _identity(resolved: dict[str, Any]) -> dict[str, Any]:
    """The resolved config without what the sweep sets per run (seed, run directory)."""
    flat = _flatten(resolved)
    return {k: v for k, v in flat.items() if k not in PER_RUN_KEYS}


def _check_run_layout(resolved: dict[str, Any], config: str) -> list[str]:
    """Options the sweep needs: one logger whose version directory is the run; no shared checkpoint/record dirs.
    Returns the logger options to add (a TensorBoardLogger when the config keeps Lightning's default logger)."""
    trainer = resolved.get("trainer") or {}
    logger = trainer.get("logger")
    if logger is False:
        raise ConfigurationError(
            f"{config} turns the logger off (trainer.logger: false); a sweep keeps each run in its logger's version "
            "directory: remove that line or give a TensorBoardLogger."
        )
    if isinstance(logger, list):
        raise ConfigurationError(
            f"{config} has {len(logger)} loggers; a sweep gives each run one logger version directory: keep one logger "
            "(a TensorBoardLogger lets sweep-report read its scalars)."
        )
    extra = []
    if logger in (None, True):
        extra.append("--trainer.logger=lightning.pytorch.loggers.TensorBoardLogger")
    elif not {"save_dir", "name", "version"} <= set((logger or {}).get("init_args") or {}):
        raise ConfigurationError(
            f"{config}: the logger {logger.get('class_path')} has no save_dir/name/version options; a sweep needs them "
            "to give each run its directory: use lightning.pytorch.loggers.TensorBoardLogger (or CSVLogger)."
        )
    for callback in trainer.get("callbacks") or []:
        init = (callback or {}).get("init_args") or {}
        for option in ("dirpath", "record_dir"):
            if init.get(option) is not None:
                raise ConfigurationError(
                    f"{config}: {callback.get('class_path')} writes to {option}={init[option]!r}, which every run of the "
                    f"sweep would share: remove {option} (its default is inside the run directory)."
                )
    return extra


def _snapshot(resolved: dict[str, Any], identity: dict[str, Any], name: str, config: str) -> Optional[str]:
    """The combination's resolved config as a YAML file's text, which its runs then read instead of the experiment
    file: a sweep runs what was planned even when the experiment file is edited while runs are still waiting.

    Kept only if it reads back to the same configuration; otherwise (None) the runs read the experiment file and its
    options, as ``fit`` would."""
    import tempfile

    text = ("# The resolved configuration of this sweep combination when it was planned. Every run of the combination\n"
            "# reads this file (plus its seed and run directory), not the experiment file, so editing the experiment\n"
            "# during the sweep changes nothing. Written by `python -m gan_lightning sweep`.\n"
            + yaml.safe_dump(resolved, sort_keys=False))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / SNAPSHOT_FILE
        path.write_text(text)
        try:
            same = _identity(resolve_fit_config(["--config", str(path)])) == identity
        except Exception:  # noqa: BLE001 - a config the dump does not round-trip: fall back to the original
            same = False
    if not same:
        print(f"sweep: note: the configuration of {name} does not read back from a resolved copy; its runs read {config} "
              "when they start, so do not edit that file until the sweep has ended.", file=sys.stderr)
        return None
    return text


def write_snapshots(plan: dict[str, Any], sweep_dir: Path) -> None:
    """Write each combination's planned config (under the sweep lock, after :func:`merge_plans` refused any change of a
    planned combination). A file left by an earlier plan is replaced too: the plan may have been moved away."""
    for combo in plan["combinations"]:
        text = combo.pop("_snapshot", None)
        path = sweep_dir / combo["name"] / SNAPSHOT_FILE
        if text is not None and not (path.is_file() and path.read_text() == text):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)


def _keeps_last_checkpoint(resolved: dict[str, Any]) -> bool:
    callbacks = (resolved.get("trainer") or {}).get("callbacks") or []
    return any(((cb or {}).get("init_args") or {}).get("save_last") for cb in callbacks)


# ----------------------------------------------------------------------------------------------------- the plan
def plan_sweep(
    config: str,
    seeds: list[int],
    grid: list[tuple[str, list[str]]],
    fit_options: list[str],
    sweep_dir: Path,
) -> dict[str, Any]:
    """Check everything before anything runs, and describe every run: its directory and its fit options."""
    config_path = Path(config).expanduser()
    if not config_path.is_file():
        raise ConfigurationError(f"--config {config}: no such file; give the path of an experiment YAML (e.g. experiments/ring8.yaml).")
    for option in fit_options:
        name = option.split("=", 1)[0]
        if name in ("--ckpt_path", "--seed_everything"):
            raise ConfigurationError(
                f"{name} after '--': the sweep sets it for every run ({'--seeds' if 'seed' in name else '--ckpt_path last'}); remove it."
            )
    base_args = ["--config", str(config_path.resolve()), *fit_options]
    try:
        base = resolve_fit_config(base_args)
    except Exception as err:  # noqa: BLE001 - whatever fit would refuse, refuse now, in one line
        raise ConfigurationError(f"--config {config}{' with the options after --' if fit_options else ''} does not parse as a fit config: {_one_line(err)}") from err
    logger_args = _check_run_layout(base, config)
    for i, (key, values) in enumerate(grid):
        # with the first value of the keys before it: a key may exist only once an earlier one chose a class
        # (--grid model.loss=gan_lightning.losses.WassersteinGPLoss --grid model.loss.init_args.gp_weight=1,10)
        try:
            resolve_fit_config([*base_args, *[f"--{k}={v[0]}" for k, v in grid[:i + 1]]])
        except Exception as err:  # noqa: BLE001
            if "unrecognized arguments" in str(err).lower():
                raise ConfigurationError(
                    f"--grid {key}: fit has no option {key} with {config}; see `python -m gan_lightning fit --config "
                    f"{config} --print_config` for the options (e.g. model.loss, model.n_critic)."
                ) from err
            raise ConfigurationError(f"--grid {key}={values[0]}: {_one_line(err)}") from err

    combos = []
    for name, overrides in combinations(grid):
        options = [f"--{k}={v}" for k, v in overrides.items()]
        try:
            resolved = resolve_fit_config([*base_args, *options])
        except Exception as err:  # noqa: BLE001
            raise ConfigurationError(f"--grid combination {name}: {_one_line(err)}") from err
        identity = _identity(resolved)
        snapshot = _snapshot(resolved, identity, name, config)
        combos.append({"name": name, "overrides": overrides, "options": options, "identity": identity,
                       "config_file": None if snapshot is None else f"{name}/{SNAPSHOT_FILE}", "_snapshot": snapshot})
    if not _keeps_last_checkpoint(base):
        print(f"sweep: note: {config} saves no last.ckpt (add gan_lightning.callbacks.GANCheckpoint with save_last: true); "
              "an interrupted run will start again from its first step.", file=sys.stderr)

    save_dir = sweep_dir.resolve()
    runs = []
    for combo in combos:
        for seed in seeds:
            version = f"seed_{seed}"
            run_dir = save_dir / combo["name"] / version
            config_args = (["--config", str(save_dir / combo["config_file"])] if combo["config_file"] is not None
                           else [*base_args, *combo["options"]])
            fit_args = [
                *config_args, *logger_args,
                f"--trainer.logger.init_args.save_dir={save_dir}",
                f"--trainer.logger.init_args.name={combo['name']}",
                f"--trainer.logger.init_args.version={version}",
                f"--trainer.default_root_dir={run_dir}",
                f"--seed_everything={seed}",
                f"--trainer.callbacks+={RUN_RECORD_CALLBACK}",
            ]
            runs.append({"combination": combo["name"], "seed": seed, "dir": f"{combo['name']}/{version}",
                         "version": version, "fit_args": fit_args})
    return {
        "format": 1,
        "name": sweep_dir.name,
        "config": str(config_path),
        "grid": [{"key": k, "values": v} for k, v in grid],
        "seeds": seeds,
        "fit_options": list(fit_options),
        "combinations": combos,
        "runs": runs,
        "slurm_jobs": [],
    }


def _first_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return f"{key}: {old.get(key)!r} when planned, {new.get(key)!r} now"
    return ""


def merge_plans(old: Optional[dict[str, Any]], new: dict[str, Any], sweep_dir: Path) -> dict[str, Any]:
    """A sweep directory accumulates combinations and seeds; a combination's configuration is fixed once planned."""
    if old is None:
        for i, run in enumerate(new["runs"]):
            run["index"] = i
        return new
    old_combos = {c["name"]: c for c in old["combinations"]}
    for combo in new["combinations"]:
        before = old_combos.get(combo["name"])
        if before is not None and before["identity"] != combo["identity"]:
            raise ConfigurationError(
                f"{sweep_dir / combo['name']} was planned with another configuration "
                f"({_first_difference(before['identity'], combo['identity'])}): run the sweep with its first options to "
                "resume it, or give a new --name."
            )
        old_combos[combo["name"]] = combo
    runs = {(r["combination"], r["seed"]): r for r in old["runs"]}
    for run in new["runs"]:
        key = (run["combination"], run["seed"])
        run["index"] = runs[key]["index"] if key in runs else len(runs)
        runs[key] = run
    grid: dict[str, list[str]] = {g["key"]: list(g["values"]) for g in old["grid"]}
    for g in new["grid"]:
        grid[g["key"]] = grid.get(g["key"], []) + [v for v in g["values"] if v not in grid.get(g["key"], [])]
    return {
        **new,
        "grid": [{"key": k, "values": v} for k, v in grid.items()],
        "seeds": sorted(set(old["seeds"]) | set(new["seeds"])),
        "combinations": list(old_combos.values()),
        "runs": sorted(runs.values(), key=lambda r: r["index"]),
        "slurm_jobs": old.get("slurm_jobs", []),
    }


def load_plan(sweep_dir: Path) -> Optional[dict[str, Any]]:
    path = sweep_dir / PLAN_FILE
    if not path.is_file():
        return None
    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigurationError(f"Cannot read {path} ({err}); move it away to plan the sweep again.") from err
    if plan.get("format") != 1:
        raise ConfigurationError(f"{path} was written by another version of gan_lightning; use a new --name.")
    return plan


# ------------------------------------------------------------------------------------------ one attempt of a run
def is_finished(run_dir: Path) -> bool:
    return (run_dir / RUN_RECORD).is_file()


def begin_attempt(run_dir: Path, how: str) -> str:
    """Prepare the run directory for an attempt; ``"resume"`` when it has a last.ckpt, else ``"new"`` (the partial
    files of an attempt that never reached a checkpoint are removed: the run starts over)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "error.txt").unlink(missing_ok=True)
    resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
    if not resume:
        for path in run_dir.iterdir():
            if path.name in LOG_FILES:
                continue
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    with open(run_dir / "stderr.log", "a") as log:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        log.write(f"{ATTEMPT_HEADER} {'resuming from checkpoints/last.ckpt' if resume else 'new run'}, {stamp}, {how}\n")
    return "resume" if resume else "new"


def error_line(stderr_log: Path, returncode: int) -> str:
    """The one line that says why the last attempt failed: the CLI's ``error: ...`` line, else the traceback's last."""
    try:
        text = stderr_log.read_text(errors="replace")
    except OSError:
        text = ""
    text = text.rsplit(ATTEMPT_HEADER, 1)[-1]
    lines = [ln.rstrip() for ln in text.splitlines()[1:] if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    if returncode < 0:
        line = f"killed by {signal.Signals(-returncode).name}" if -returncode in signal.valid_signals() else "killed"
    elif errors:
        line = errors[-1]
    elif "Traceback (most recent call last):" in text:
        after = text.rsplit("Traceback (most recent call last):", 1)[1].splitlines()
        tail = [ln.rstrip() for ln in after if ln.strip() and not ln.startswith((" ", "\t"))]
        line = tail[0] if tail else "the run raised an exception"
    else:
        line = lines[-1] if lines else "the run failed without a message"
    return f"{line} (exit code {returncode})"


def end_attempt(run_dir: Path, returncode: int) -> str:
    """``"finished"``, ``"failed"`` (error.txt written) or ``"stopped"`` (exited cleanly before its end: preempted)."""
    if is_finished(run_dir):
        return "finished"
    if returncode == 0:
        return "stopped"
    (run_dir / "error.txt").write_text(error_line(run_dir / "stderr.log", returncode) + "\n")
    return "failed"


# -------------------------------------------------------------------------------------------------- local launcher
def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _visible_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() not in ("", "-1")]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no CUDA: CPU threads only
        return []


def _slot_devices(slot: int, jobs: int, gpus: list[str]) -> str:
    """The GPUs of job slot ``slot``: a share of ``len(gpus) // jobs`` devices, or one device round-robin."""
    if jobs <= len(gpus):
        per = len(gpus) // jobs
        return ",".join(gpus[slot * per:(slot + 1) * per])
    return gpus[slot % len(gpus)]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGKILL the run if the sweep process dies, so no orphan keeps training while the sweep is restarted."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_local(sweep_dir: Path, runs: list[dict[str, Any]], jobs: int) -> dict[str, str]:
    """Run ``runs`` with ``jobs`` at a time, each in its own ``python -m gan_lightning fit`` process."""
    gpus = _visible_gpus()
    threads = max(1, _cpu_count() // jobs)
    share = f"{threads} CPU thread{'s' if threads > 1 else ''}" + (f", GPUs by CUDA_VISIBLE_DEVICES" if gpus else "")
    print(f"sweep: {len(runs)} run(s) to go, {jobs} at a time ({share} each)", flush=True)
    queue = list(runs)
    running: dict[int, tuple[subprocess.Popen, dict[str, Any], float]] = {}
    statuses: dict[str, str] = {}
    done = 0
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while queue or running:
            while queue and len(running) < jobs:
                slot = min(set(range(jobs)) - set(running))
                run = queue.pop(0)
                run_dir = sweep_dir / run["dir"]
                how = begin_attempt(run_dir, f"local, slot {slot}")
                env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
                if gpus:
                    env["CUDA_VISIBLE_DEVICES"] = _slot_devices(slot, jobs, gpus)
                with open(run_dir / "stdout.log", "ab") as out, open(run_dir / "stderr.log", "ab") as err:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "gan_lightning", "fit", *run["fit_args"], "--ckpt_path", "last"],
                        stdout=out, stderr=err, env=env,
                        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                    )
                running[slot] = (proc, run, time.monotonic())
                print(f"sweep: start  {run['dir']} ({'resuming from last.ckpt' if how == 'resume' else 'new run'})", flush=True)
            time.sleep(0.2)
            for slot, (proc, run, started) in list(running.items()):
                returncode = proc.poll()
                if returncode is None:
                    continue
                del running[slot]
                done += 1
                run_dir = sweep_dir / run["dir"]
                status = end_attempt(run_dir, returncode)
                statuses[run["dir"]] = status
                took = f"{time.monotonic() - started:.0f} s"
                if status == "finished":
                    step = json.loads((run_dir / RUN_RECORD).read_text()).get("global_step")
                    print(f"sweep: [{done}/{len(runs)}] finished {run['dir']} (step {step}, {took})", flush=True)
                elif status == "failed":
                    message = (run_dir / "error.txt").read_text().strip()
                    print(f"sweep: [{done}/{len(runs)}] FAILED   {run['dir']}: {message}", flush=True)
                else:
                    print(f"sweep: [{done}/{len(runs)}] stopped  {run['dir']} before its end (exit 0); the next sweep "
                          "resumes it", flush=True)
    except KeyboardInterrupt:
        for proc, _, _ in running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc, _, _ in running.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        print(f"sweep: interrupted; {len(running)} run(s) stopped. Run the same command again to resume them.",
              file=sys.stderr, flush=True)
        raise SystemExit(130)
    finally:
        signal.signal(signal.SIGTERM, previous_term)
    return statuses


# -------------------------------------------------------------------------------------------------- Slurm launcher
def _queued_jobs(job_ids: list[str]) -> list[str]:
    """Those of ``job_ids`` that Slurm still has pending or running."""
    if not job_ids or shutil.which("squeue") is None:
        return []
    alive = []
    for job in job_ids:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i"], capture_output=True, text=True, timeout=60)
        if out.returncode == 0 and out.stdout.strip():
            alive.append(job)
    return alive


def _array_spec(indices: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2,5,7-8"``."""
    spans: list[list[int]] = []
    for i in sorted(indices):
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _check_slurm(scripts: Path) -> None:
    if shutil.which("sbatch") is None:
        raise ConfigurationError("--launcher slurm: `sbatch` is not on PATH; run the sweep on a Slurm login node (or use --launcher local).")
    for script in ("sweep_array.sbatch", "train.sbatch"):
        if not (scripts / script).is_file():
            raise ConfigurationError(
                f"--launcher slurm needs {script} (from the gan_lightning repository's scripts/slurm/), not found in "
                f"{scripts}: pass --slurm_dir DIR."
            )


def submit_slurm(sweep_dir: Path, runs: list[dict[str, Any]], jobs: Optional[int], sbatch: Optional[str],
                 scripts: Path, report: bool) -> list[str]:
    """One job array (one task per run, ``scripts/slurm/sweep_array.sbatch``), and a report job after it."""
    array_script = scripts / "sweep_array.sbatch"
    user_options = shlex.split(sbatch or "")
    env = dict(os.environ)
    env.setdefault("PYTHON", sys.executable)
    (sweep_dir / "slurm").mkdir(exist_ok=True)
    array = _array_spec([r["index"] for r in runs]) + (f"%{jobs}" if jobs else "")
    command = ["sbatch", "--parsable", f"--array={array}", f"--job-name=sweep-{sweep_dir.name}",
               f"--output={sweep_dir.resolve()}/slurm/%A_%a.out", *user_options,
               str(array_script.resolve()), str((sweep_dir / PLAN_FILE).resolve())]
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    if out.returncode != 0:
        raise SweepError(f"sbatch refused the job array ({_one_line(RuntimeError(out.stderr or out.stdout))}); command: {shlex.join(command)}")
    job = out.stdout.strip().split(";")[0]
    submitted = [job]
    print(f"sweep: submitted job array {job} ({len(runs)} task(s), array {array}); follow it with `squeue -j {job}`", flush=True)
    if report:
        wrap = shlex.join([env["PYTHON"], "-m", "gan_lightning", "sweep-report", str(sweep_dir.resolve())])
        follow = subprocess.run(
            ["sbatch", "--parsable", f"--dependency=afterany:{job}", "--kill-on-invalid-dep=yes",
             f"--job-name=sweep-report-{sweep_dir.name}", f"--output={sweep_dir.resolve()}/slurm/report_%j.out",
             *user_options, "--nodes=1", "--ntasks=1", "--cpus-per-task=1", "--gres=none", "--time=30:00",
             f"--wrap={wrap}"],
            capture_output=True, text=True, env=env, timeout=120,
        )
        if follow.returncode == 0:
            report_job = follow.stdout.strip().split(";")[0]
            submitted.append(report_job)
            print(f"sweep: job {report_job} writes {sweep_dir}/report.md when the array is done", flush=True)
        else:
            print(f"sweep: note: the report job was not submitted ({_one_line(RuntimeError(follow.stderr))}); run "
                  f"`python -m gan_lightning sweep-report {sweep_dir}` when the array is done.", file=sys.stderr, flush=True)
    return submitted


def run_slurm_task(plan_file: str, index: int) -> int:
    """The body of one array task (``scripts/slurm/sweep_array.sbatch``): run number ``index`` of the plan through
    ``train.sbatch`` (SlurmRequeue, ``--ckpt_path last``, RUN_VERSION = the run's version directory)."""
    plan_path = Path(plan_file)
    plan = json.loads(plan_path.read_text())
    run = next((r for r in plan["runs"] if r["index"] == index), None)
    if run is None:
        print(f"sweep task: {plan_path} has no run {index}", file=sys.stderr)
        return 2
    run_dir = plan_path.parent / run["dir"]
    if is_finished(run_dir):
        print(f"sweep task: {run['dir']} is already finished; nothing to do", file=sys.stderr)
        return 0
    job = f"{os.environ.get('SLURM_ARRAY_JOB_ID', '?')}_{os.environ.get('SLURM_ARRAY_TASK_ID', '?')}"
    how = begin_attempt(run_dir, f"slurm job {job}, restart {os.environ.get('SLURM_RESTART_COUNT', '0')}")
    print(f"sweep task: {run['dir']} ({'resuming from last.ckpt' if how == 'resume' else 'new run'})", file=sys.stderr, flush=True)
    template = plan.get("slurm_template") or str(SLURM_DIR / "train.sbatch")
    env = dict(os.environ, RUN_VERSION=run["version"], PYTHONUNBUFFERED="1")
    # this process is part of the batch step: the preemption signal is for the training tasks only
    signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    proc = subprocess.Popen(["bash", template, *run["fit_args"]], stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    with open(run_dir / "stderr.log", "ab") as log:
        for line in iter(proc.stderr.readline, b""):  # tee: the Slurm output file and the run's stderr.log
            sys.stderr.buffer.write(line)
            sys.stderr.flush()
            log.write(line)
            log.flush()
    returncode = proc.wait()
    status = end_attempt(run_dir, returncode)
    print(f"sweep task: {run['dir']} {status} (exit code {returncode})", file=sys.stderr, flush=True)
    return returncode


# ---------------------------------------------------------------------------------------------------- the command
class _SweepLock:
    """At most one sweep command at a time per sweep directory (an advisory lock; released if the process dies)."""

    def __init__(self, sweep_dir: Path):
        self.path = sweep_dir / LOCK_FILE
        self.handle: Any = None

    def __enter__(self) -> "_SweepLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "w")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            self.handle.close()
            raise SweepError(f"Another sweep command is running in {self.path.parent}; wait for it to end (or stop it), then run this one again.") from err
        return self

    def __exit__(self, *exc: Any) -> None:
        self.handle.close()


def sweep(
    config: str,
    seeds: str,
    grid: Optional[list[str]] = None,
    name: Optional[str] = None,
    launcher: Literal["local", "slurm"] = "local",
    jobs: Optional[int] = None,
    root: str = "runs",
    report: bool = True,
    sbatch: Optional[str] = None,
    slurm_dir: Optional[str] = None,
    fit_options: Optional[list[str]] = None,
) -> Path:
    """Train every grid combination with every seed, each as an ordinary ``fit`` run; run it again to resume.

    Fit options for every run go after ``--``, e.g. ``-- --trainer.max_steps=5000``.

    Args:
        config: the experiment YAML, as for ``fit --config``.
        seeds: the seeds, e.g. ``0-4``, ``0,2,5`` or ``3`` (each run gets ``--seed_everything`` = its seed).
        grid: ``KEY=VALUE1,VALUE2,...`` with KEY a fit option (e.g. ``model.loss=nonsaturating,hinge``); repeat
            ``--grid`` for more keys: every combination of the values is trained.
        name: the sweep's directory under ``root`` (default: the config's file name without .yaml).
        launcher: ``local`` (this machine) or ``slurm`` (one job array built on scripts/slurm/train.sbatch).
        jobs: runs at a time: local default 1 (or one per GPU); the CPU threads (or GPUs) are divided between them.
            With slurm, the array's limit of simultaneously running tasks (default none).
        root: the directory holding the sweeps (runs/<name>/...).
        report: write ``report.md``/``.csv``/``.json`` at the end (local), or submit a report job after the array (slurm).
        sbatch: extra sbatch options for the array, e.g. ``"--partition=gpu --gres=gpu:1 --time=4:00:00"``.
        slurm_dir: where ``train.sbatch`` and ``sweep_array.sbatch`` are (default: the repository's scripts/slurm).
    """
    fit_options = list(fit_options or [])
    seed_list = parse_seeds(seeds)
    grid_items = parse_grid(grid or [])
    if jobs is not None and jobs < 1:
        raise ConfigurationError(f"--jobs {jobs}: give at least 1 run at a time.")
    name = name or Path(config).stem
    if not re.fullmatch(r"[A-Za-z0-9_+=,-][A-Za-z0-9._+=,-]*", name):
        raise ConfigurationError(f"--name {name!r}: use letters, digits and . _ - + = , only (it names a directory).")
    sweep_dir = Path(root).expanduser() / name
    if launcher == "slurm":
        _check_slurm(Path(slurm_dir).expanduser() if slurm_dir else SLURM_DIR)
    new_plan = plan_sweep(config, seed_list, grid_items, fit_options, sweep_dir)
    with _SweepLock(sweep_dir):
        plan = merge_plans(load_plan(sweep_dir), new_plan, sweep_dir)
        queued = _queued_jobs(plan.get("slurm_jobs", []))
        if queued:
            raise SweepError(
                f"Slurm job(s) {', '.join(queued)} of this sweep are still queued or running; wait for them "
                f"(squeue -j {','.join(queued)}) or scancel them before running the sweep again."
            )
        wanted = {(r["combination"], r["seed"]) for r in new_plan["runs"]}
        selected = [r for r in plan["runs"] if (r["combination"], r["seed"]) in wanted]
        todo = [r for r in selected if not is_finished(sweep_dir / r["dir"])]
        finished_before = len(selected) - len(todo)
        print(f"sweep: {sweep_dir}: {len(new_plan['combinations'])} combination(s) x {len(seed_list)} seed(s) = "
              f"{len(selected)} runs; {finished_before} already finished", flush=True)
        write_snapshots(plan, sweep_dir)
        write_record(plan, sweep_dir / PLAN_FILE)  # Slurm tasks read it
        statuses: dict[str, str] = {}
        if launcher == "slurm" and todo:
            scripts = Path(slurm_dir).expanduser() if slurm_dir else SLURM_DIR
            plan["slurm_template"] = str((scripts / "train.sbatch").resolve())
            write_record(plan, sweep_dir / PLAN_FILE)
            plan["slurm_jobs"] = plan.get("slurm_jobs", []) + submit_slurm(sweep_dir, todo, jobs, sbatch, scripts, report)
            write_record(plan, sweep_dir / PLAN_FILE)
            return sweep_dir
        if todo:
            statuses = run_local(sweep_dir, todo, jobs or max(1, len(_visible_gpus())))
    if report:
        from gan_lightning.commands.sweep_report import sweep_report

        written = sweep_report(str(sweep_dir))
        print(f"sweep: report in {written}", flush=True)
    failed = [d for d, s in statuses.items() if s == "failed"]
    if failed:
        raise SweepError(
            f"{len(failed)} of {len(selected)} runs failed ({', '.join(failed)}); their errors are in "
            f"{sweep_dir}/report.md and <run>/error.txt. Fix the cause and run the same command again."
        )
    return sweep_dir


def split_fit_options(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``[sweep options] -- [fit options]``."""
    argv = list(argv)
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1:]
    return argv, []


def main(argv: Sequence[str]) -> None:
    """``python -m gan_lightning sweep ...`` (parsed by jsonargparse from :func:`sweep`'s signature)."""
    from jsonargparse import ArgumentParser

    options, fit_options = split_fit_options(argv)
    parser = ArgumentParser(
        prog="python -m gan_lightning sweep",
        description=(sweep.__doc__ or "").split("\n\n")[0],
        epilog="Fit options for every run go after '--', e.g.: python -m gan_lightning sweep --config "
               "experiments/ring8.yaml --seeds 0-4 --grid model.loss=nonsaturating,hinge -- --trainer.max_steps=5000",
    )
    parser.add_function_arguments(sweep, as_group=False, skip={"grid", "fit_options"})
    parser.add_argument("--grid", action="append", default=[],
                        help="KEY=VALUE1,VALUE2,... (repeatable): a fit option and its values; every combination is trained.")
    cfg = parser.parse_args(options).as_dict()
    sweep(**cfg, fit_options=fit_options)


if __name__ == "__main__":
    # ``python -m gan_lightning.commands.sweep PLAN INDEX``: one Slurm array task (scripts/slurm/sweep_array.sbatch)
    from jsonargparse import CLI

    sys.exit(CLI(run_slurm_task, as_positional=True))
