"""Throttled progress lines for long loops (training, generation), with no Dagster import.

A trainer calls `progress.step(...)` on every optimizer step and `progress.epoch_end(...)` after
each epoch; the reporter writes one line to `log` at most every `every_s` seconds, plus the first
step, every epoch end and the last step, so a run log stays readable for a 2-minute smoke run and
a 10-hour GPU run alike. In an asset, pass `log=context.log.info`.

    progress = ProgressReporter(context.log.info, total_steps=epochs * steps_per_epoch,
                                total_epochs=epochs, label="adapter_summary")
    for epoch in range(epochs):
        for batch in batches:
            loss = train_step(batch)
            progress.step(loss=loss)
        progress.epoch_end(loss=mean_loss)
    progress.done()

For loops that count rather than step, `progress.update(done, total)`; for code that already reports
text such as "generated 12/40 answers", pass `progress.message` as its `Callable[[str], None]`.

Lines look like:
    adapter_summary: epoch 2/5 step 40/100 (40%) loss 1.8342 | 3.1 step/s | elapsed 0:00:13 | ETA 0:00:19
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Callable


_COUNT = re.compile(r"(\d+)\s*/\s*(\d+)")


def format_duration(seconds: float | None) -> str:
    """`H:MM:SS`, or `?` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


@dataclass
class ProgressReporter:
    """Logs epoch, step, loss, rate and ETA through `log`, throttled to one line per `every_s`.

    `total_steps` (over all epochs) enables the percentage and the ETA; without it the reporter
    still logs step, loss and rate. `clock` is injectable for tests.
    """

    log: Callable[[str], None]
    total_steps: int | None = None
    total_epochs: int | None = None
    label: str = "progress"
    every_s: float = 10.0
    unit: str = "step"
    clock: Callable[[], float] = time.monotonic

    steps_done: int = field(default=0, init=False)
    epoch: int = field(default=0, init=False)  # epochs completed
    last_loss: float | None = field(default=None, init=False)
    lines: int = field(default=0, init=False)
    _start: float = field(default=0.0, init=False)
    _last_log: float | None = field(default=None, init=False)
    _first_step_at: float | None = field(default=None, init=False)
    _first_steps: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.every_s < 0:
            raise ValueError("every_s must be >= 0")
        self._start = self.clock()

    # --- what callers use ----------------------------------------------------------------

    def step(self, n: int = 1, loss: float | None = None, **extra: float | int | str) -> None:
        """Record `n` finished steps (and the latest loss); log if the throttle allows."""
        self.steps_done += n
        if loss is not None:
            self.last_loss = float(loss)
        now = self.clock()
        if self._first_step_at is None:
            self._first_step_at, self._first_steps = now, self.steps_done
        first = self.steps_done == n
        last = self.total_steps is not None and self.steps_done >= self.total_steps
        if first or last or self._last_log is None or now - self._last_log >= self.every_s:
            self._emit(now, extra)

    def update(self, done: int, total: int | None = None, loss: float | None = None) -> None:
        """Set the absolute count (for loops that know "done of total" rather than count steps)."""
        if total is not None:
            self.total_steps = total
        if done > self.steps_done:
            self.step(n=done - self.steps_done, loss=loss)

    def message(self, text: str) -> None:
        """A `Callable[[str], None]` for code that reports text like "generated 12/40 answers": the
        first `done/total` in the text drives the counts (and so the rate and ETA); text without
        one is passed through."""
        found = _COUNT.search(text)
        if found:
            self.update(int(found.group(1)), int(found.group(2)))
        else:
            self.log(f"{self.label}: {text}")
            self.lines += 1

    def epoch_end(self, loss: float | None = None, **extra: float | int | str) -> None:
        """Always logs: an epoch boundary is worth a line whatever the throttle says."""
        self.epoch += 1
        if loss is not None:
            self.last_loss = float(loss)
        self._emit(self.clock(), {"epoch_done": self.epoch, **extra})

    def done(self, **extra: float | int | str) -> None:
        """A final line with the total time."""
        elapsed = self.clock() - self._start
        parts = [f"{self.label}: done, {self.steps_done} {self.unit}s in {format_duration(elapsed)}"]
        if self.last_loss is not None:
            parts.append(f"final loss {self.last_loss:.4f}")
        parts += [f"{key} {value}" for key, value in extra.items()]
        self.log(" | ".join(parts))
        self.lines += 1

    # --- derived figures -----------------------------------------------------------------

    @property
    def elapsed(self) -> float:
        return self.clock() - self._start

    @property
    def rate(self) -> float | None:
        """Steps per second: measured from the first reported step once there are later ones (a
        reporter created lazily at the first step has not timed that step), else since creation if
        that is long enough to mean something; None when unknown."""
        now = self.clock()
        if self._first_step_at is not None and self.steps_done > self._first_steps and now > self._first_step_at:
            return (self.steps_done - self._first_steps) / (now - self._first_step_at)
        elapsed = now - self._start
        return self.steps_done / elapsed if elapsed >= 1.0 and self.steps_done else None

    @property
    def eta(self) -> float | None:
        """Seconds left, from the average rate so far; None when unknown."""
        rate = self.rate
        if self.total_steps is None or not rate:
            return None
        return max(self.total_steps - self.steps_done, 0) / rate

    def format_line(self, extra: dict | None = None) -> str:
        head = f"{self.label}:"
        if self.total_epochs:
            current = min(self.epoch + 1, self.total_epochs)
            if extra and "epoch_done" in extra:
                current = extra["epoch_done"]
            head += f" epoch {current}/{self.total_epochs}"
        if self.total_steps:
            pct = 100.0 * self.steps_done / self.total_steps
            head += f" {self.unit} {self.steps_done}/{self.total_steps} ({pct:.0f}%)"
        else:
            head += f" {self.unit} {self.steps_done}"
        if self.last_loss is not None:
            head += f" loss {self.last_loss:.4f}"
        parts = [head]
        rate = self.rate
        if rate:
            parts.append(f"{rate:.2f} {self.unit}/s" if rate < 10 else f"{rate:.0f} {self.unit}/s")
        parts.append(f"elapsed {format_duration(self.elapsed)}")
        if self.total_steps:
            parts.append(f"ETA {format_duration(self.eta)}")
        for key, value in (extra or {}).items():
            if key == "epoch_done":
                parts.append("epoch end")
            else:
                parts.append(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}")
        return " | ".join(parts)

    def _emit(self, now: float, extra: dict) -> None:
        self.log(self.format_line(extra))
        self.lines += 1
        self._last_log = now


def null_progress(total_steps: int | None = None, total_epochs: int | None = None) -> ProgressReporter:
    """A reporter that logs nowhere, for callers that pass no progress."""
    return ProgressReporter(lambda _line: None, total_steps=total_steps, total_epochs=total_epochs)


class ThrottledLog:
    """A `Callable[[str], None]` that forwards at most one message per `every_s` to `log`.

    For loops that already format their own progress text (`progress("generated 12/40 answers")`):
    the first message always goes through, later ones only once `every_s` has passed since the
    last forwarded one; `flush()` forwards the latest held-back message (call it at the end).
    """

    def __init__(self, log: Callable[[str], None], every_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.log = log
        self.every_s = every_s
        self.clock = clock
        self._last: float | None = None
        self._pending: str | None = None

    def __call__(self, message: str) -> None:
        now = self.clock()
        if self._last is None or now - self._last >= self.every_s:
            self.log(message)
            self._last = now
            self._pending = None
        else:
            self._pending = message

    def flush(self) -> None:
        if self._pending is not None:
            self.log(self._pending)
            self._last = self.clock()
            self._pending = None
