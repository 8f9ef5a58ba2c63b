"""The progress interface: ProgressEvents turned into throttled log lines, with a fake clock (no sleeping)."""

import dagster as dg
import pytest

from ohlora_assets.core.progress import ProgressEvent, ProgressReporter, format_duration


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _train(progress, clock: FakeClock, epochs: int = 2, steps_per_epoch: int = 50, step_s: float = 1.0) -> None:
    """What a trainer reports: one event per step, then one epoch end with that epoch's metrics."""
    total = epochs * steps_per_epoch
    done = 0
    for epoch in range(1, epochs + 1):
        for _ in range(steps_per_epoch):
            clock.now += step_s
            done += 1
            progress(ProgressEvent(done=done, total=total, epoch=epoch, epochs=epochs, loss=3.0 - epoch))
        progress(ProgressEvent(done=done, total=total, epoch=epoch, epochs=epochs, loss=3.0 - epoch, epoch_end=True,
                               metrics={"token_accuracy": 0.5 * epoch, "valid_loss": None if epoch == 1 else 1.25}))


def test_steps_are_throttled_but_the_first_the_last_and_every_epoch_end_are_logged():
    clock, lines = FakeClock(), []
    reporter = ProgressReporter(lines.append, label="adapter", every_s=10, clock=clock)
    _train(reporter, clock)  # 100 steps, one a second
    step_lines = [line for line in lines if "epoch end" not in line]
    # the first step, one every 10 s of a 100 s run, and the last step: about 11, never 100
    assert 9 <= len(step_lines) <= 12, lines
    assert lines[0].startswith("adapter: epoch 1/2 step 1/100 (1%) loss 2.0000")
    assert "epoch 2/2 step 100/100 (100%) loss 1.0000" in step_lines[-1]
    ends = [line for line in lines if "epoch end" in line]
    assert len(ends) == 2 and lines[-1] == ends[-1]
    # metrics on the epoch-end line; a metric that is None (no validation rows) is left out
    assert ends[0].endswith("epoch end | token_accuracy 0.5000") and "valid_loss" not in ends[0]
    assert ends[1].endswith("epoch end | token_accuracy 1.0000 | valid_loss 1.2500")
    assert reporter.lines == len(lines)


def test_epoch_ends_are_logged_even_inside_the_throttle_window():
    clock, lines = FakeClock(), []
    _train(ProgressReporter(lines.append, every_s=3600, clock=clock), clock, epochs=3, steps_per_epoch=5)
    assert [line.split(" | ")[0] for line in lines] == [
        "progress: epoch 1/3 step 1/15 (7%) loss 2.0000",
        "progress: epoch 1/3 step 5/15 (33%) loss 2.0000",
        "progress: epoch 2/3 step 10/15 (67%) loss 1.0000",
        "progress: epoch 3/3 step 15/15 (100%) loss 0.0000",
        "progress: epoch 3/3 step 15/15 (100%) loss 0.0000",
    ]
    assert [("epoch end" in line) for line in lines] == [False, True, True, False, True]


def test_a_clock_starting_at_zero_still_logs_by_time():
    clock, lines = FakeClock(now=0.0), []
    reporter = ProgressReporter(lines.append, every_s=10, clock=clock)
    for done in range(1, 31):
        reporter(ProgressEvent(done=done, total=100))
        clock.now += 1.0
    assert len(lines) == 3  # at 0 s, 10 s and 20 s


def test_rate_and_eta_are_measured_from_the_first_event():
    """Set-up before the first step (loading a model) is not part of the loop's speed."""
    clock, lines = FakeClock(), []
    reporter = ProgressReporter(lines.append, label="gen", every_s=0, clock=clock)
    clock.now += 60  # set-up
    reporter(ProgressEvent(done=8, total=40, unit="answer"))
    assert reporter.rate() is None and reporter.eta() is None
    assert lines[-1] == "gen: answer 8/40 (20%) | elapsed 0:01:00 | ETA ?"
    clock.now += 16
    reporter(ProgressEvent(done=16, total=40, unit="answer"))  # 8 answers in 16 s: 0.5/s, 24 left
    assert reporter.rate() == 0.5 and reporter.eta() == 48.0
    assert lines[-1] == "gen: answer 16/40 (40%) | 0.50 answer/s | elapsed 0:01:16 | ETA 0:00:48"
    clock.now += 4  # the estimate follows the clock between events
    assert reporter.eta() == pytest.approx(24 / (8 / 20))


def test_without_a_total_there_is_a_count_and_a_rate_but_no_eta():
    clock, lines = FakeClock(), []
    reporter = ProgressReporter(lines.append, every_s=0, clock=clock)
    reporter(ProgressEvent(done=1, loss=0.5))
    clock.now += 40
    reporter(ProgressEvent(done=101, loss=0.25))
    assert lines[-1] == "progress: step 101 loss 0.2500 | 2.50 step/s | elapsed 0:00:40"
    assert reporter.eta() is None


def test_a_negative_period_is_refused():
    with pytest.raises(ValueError, match="every_s"):
        ProgressReporter(print, every_s=-1)


def test_format_duration():
    assert format_duration(3725) == "1:02:05"
    assert format_duration(None) == "?"
    assert format_duration(float("inf")) == "?"
    assert format_duration(-1) == "?"


def test_an_asset_logs_progress_through_its_run_log():
    """Wired as `ProgressReporter(context.log.info, ...)`, the lines land in the run's event log."""

    @dg.asset
    def long_job(context: dg.AssetExecutionContext) -> None:
        reporter = ProgressReporter(context.log.info, label="long_job", every_s=3600)
        clock = FakeClock()
        _train(reporter, clock, epochs=1, steps_per_epoch=3)

    with dg.instance_for_test() as instance:
        result = dg.materialize([long_job], instance=instance)
        assert result.success
        messages = [
            record.user_message
            for record in instance.all_logs(result.run_id)
            if record.user_message.startswith("long_job:")
        ]
    assert len(messages) == 3  # first step, last step, epoch end
    assert "step 3/3 (100%)" in messages[1] and "ETA" in messages[1] and messages[2].endswith("token_accuracy 0.5000")
