"""One progress interface for every long loop (pretraining, LoRA and ethics training, generation).

Core loops report structured `ProgressEvent`s to a `Progress` callable and know nothing of logging;
`ProgressReporter` is the callable assets pass: it turns events into throttled log lines (one per
`every_s` seconds, plus the first step, every epoch end and the last step), so a run log stays
readable for a 2-minute smoke run and a 10-hour GPU run alike.

    trainer(..., progress=ProgressReporter(context.log.info, label="adapter_summary"))

Lines look like:
    adapter_summary: epoch 2/5 step 40/100 (40%) loss 1.8342 | 3.1 step/s | elapsed 0:00:13 | ETA 0:00:19
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProgressEvent:
    """Where a loop stands: `done` of `total` units, and at an epoch end that epoch's metrics."""

    done: int
    total: int | None = None
    unit: str = "step"
    epoch: int | None = None  # 1-based epoch this event belongs to
    epochs: int | None = None
    loss: float | None = None
    epoch_end: bool = False
    metrics: Mapping[str, float | None] = field(default_factory=dict)  # e.g. token_accuracy, valid_loss


Progress = Callable[[ProgressEvent], None]


def format_duration(seconds: float | None) -> str:
    """`H:MM:SS`, or `?` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class ProgressReporter:
    """A `Progress` that logs label, epoch, count, loss, rate and ETA through `log`, throttled.

    The rate is measured from the first reported event (a loop's set-up before its first step is
    not part of its speed); `clock` is injectable for tests.
    """

    def __init__(
        self,
        log: Callable[[str], None],
        label: str = "progress",
        every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if every_s < 0:
            raise ValueError("every_s must be >= 0")
        self.log, self.label, self.every_s, self.clock = log, label, every_s, clock
        self.lines = 0
        self.last: ProgressEvent | None = None
        self._start = clock()
        self._first: tuple[float, int] | None = None  # (time, done) of the first event
        self._last_log: float | None = None

    def __call__(self, event: ProgressEvent) -> None:
        now = self.clock()
        if self._first is None:
            self._first = (now, event.done)
        first = self.last is None
        self.last = event
        finished = event.total is not None and event.done >= event.total
        due = self._last_log is not None and now - self._last_log >= self.every_s
        if first or finished or event.epoch_end or due:
            self.log(self.format_line(event, now))
            self.lines += 1
            self._last_log = now

    def rate(self, now: float | None = None) -> float | None:
        """Units per second since the first event; None until a later event has moved the count."""
        now = self.clock() if now is None else now
        if self._first is None or self.last is None:
            return None
        started, done = self._first
        if self.last.done > done and now > started:
            return (self.last.done - done) / (now - started)
        return None

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at the average rate so far; None when unknown."""
        rate = self.rate(now)
        if self.last is None or self.last.total is None or not rate:
            return None
        return max(self.last.total - self.last.done, 0) / rate

    def format_line(self, event: ProgressEvent, now: float) -> str:
        head = f"{self.label}:"
        if event.epochs:
            head += f" epoch {event.epoch}/{event.epochs}"
        if event.total:
            head += f" {event.unit} {event.done}/{event.total} ({100.0 * event.done / event.total:.0f}%)"
        else:
            head += f" {event.unit} {event.done}"
        if event.loss is not None:
            head += f" loss {event.loss:.4f}"
        parts = [head]
        rate = self.rate(now)
        if rate:
            parts.append(f"{rate:.2f} {event.unit}/s" if rate < 10 else f"{rate:.0f} {event.unit}/s")
        parts.append(f"elapsed {format_duration(now - self._start)}")
        if event.total:
            parts.append(f"ETA {format_duration(self.eta(now))}")
        if event.epoch_end:
            parts.append("epoch end")
        parts += [
            f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
            for key, value in event.metrics.items()
            if value is not None
        ]
        return " | ".join(parts)
