"""Progress of one evaluation on stderr, so that minutes of FID/IS/KID/PR do not look like a hang.

An evaluation has phases: loading the real images, their features, generating the samples, their features, the
scores. On a terminal each phase is a tqdm bar that disappears when the phase ends; elsewhere (CI logs, Slurm
``.out`` files) a phase prints a plain line at most every ``line_interval`` seconds while it runs. Either way each
phase ends with one line (count and seconds) and the evaluation with a summary line (total seconds and scores), and
nothing at all is printed before the evaluation has run ``delay`` seconds: quick evaluations (2,500 toy points)
stay silent. Only rank 0 prints; the counts it shows are its own share of the samples under DDP.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from tqdm import tqdm

from gan_lightning.metrics import distributed as D

Advance = Callable[[int], None]


def _no_progress(n: int) -> None:
    return None


class EvaluationProgress:
    """Reports the phases of one evaluation (see the module docstring).

    Args:
        title: what is being evaluated, e.g. ``GANEvaluation at generator step 5000``.
        delay: seconds the evaluation runs before anything is printed; None prints nothing at all.
        line_interval: without a terminal, the least number of seconds between two lines of one phase.
        bars: tqdm bars (True) or plain lines (False); default: bars when stderr is a terminal.
    """

    def __init__(self, title: str, delay: Optional[float] = 0.0, line_interval: float = 30.0, bars: Optional[bool] = None):
        self.title = title
        self.delay = delay
        self.line_interval = line_interval
        self.enabled = delay is not None and D.rank() == 0
        isatty = getattr(sys.stderr, "isatty", None)
        self.bars = bars if bars is not None else bool(callable(isatty) and isatty())
        self.start = time.monotonic()
        self.shown = False

    def _due(self) -> bool:
        return self.enabled and time.monotonic() - self.start >= (self.delay or 0.0)

    def write(self, message: str) -> None:
        """One line on stderr (through tqdm on a terminal, so open bars, the training bar included, are redrawn)."""
        self.shown = True
        if self.bars:
            tqdm.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    @contextmanager
    def phase(self, name: str, total: int, unit: str) -> Iterator[Advance]:
        """A phase of ``total`` items (``unit`` names them in the bar's rate); the context gives a function to call with
        the number of items just done."""
        if not self.enabled:
            yield _no_progress
            return
        started = time.monotonic()
        done = 0
        bar = None
        if self.bars:
            remaining_delay = max(0.0, (self.delay or 0.0) - (started - self.start))
            bar = tqdm(total=total, desc=f"{self.title}: {name}", unit=f" {unit}", file=sys.stderr, leave=False,
                       delay=remaining_delay, dynamic_ncols=True)
        last_line = started

        def advance(n: int) -> None:
            nonlocal done, last_line
            done += n
            if bar is not None:
                bar.update(n)
                return
            now = time.monotonic()
            if now - last_line >= self.line_interval and self._due():
                last_line = now
                self.write(f"{self.title}: {name} {done}/{total} ({100 * done / max(total, 1):.0f}%), "
                           f"{now - started:.0f} s so far")

        try:
            yield advance
        finally:
            if bar is not None:
                bar.close()
        if self._due():
            self.write(f"{self.title}: {name} {done}/{total} in {time.monotonic() - started:.1f} s")

    def note(self, message: str) -> None:
        """A one-off line (e.g. where the real features came from), under the same delay."""
        if self._due():
            self.write(f"{self.title}: {message}")

    def finish(self, scores: dict[str, float]) -> None:
        """The closing line: total seconds and scores, if anything of this evaluation was shown."""
        if self.enabled and (self.shown or self._due()):
            values = " ".join(f"{key}={value:.4g}" for key, value in scores.items())
            self.write(f"{self.title}: done in {time.monotonic() - self.start:.1f} s" + (f": {values}" if values else ""))
