"""The progress reporter: throttling, epoch ends, ETA, with a fake clock (no sleeping)."""

import dagster as dg

from ohlora_assets.core.progress import ProgressReporter, ThrottledLog, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttles_steps_but_always_logs_first_last_and_epoch_ends():
    clock, lines = FakeClock(), []
    progress = ProgressReporter(lines.append, total_steps=100, total_epochs=2, label="adapter", every_s=10, clock=clock)
    for epoch in range(2):
        for _ in range(50):
            clock.now += 1.0  # one step per second: 100 s in all
            progress.step(loss=2.0 - epoch)
        progress.epoch_end(loss=2.0 - epoch)
    progress.done()
    step_lines = [line for line in lines if "epoch end" not in line and "done" not in line]
    # first step, then one every 10 s of a 100 s run, and the last step: about 11, never 100
    assert 9 <= len(step_lines) <= 12, lines
    assert sum("epoch end" in line for line in lines) == 2
    assert lines[0].startswith("adapter: epoch 1/2 step 1/100 (1%) loss 2.0000")
    assert "epoch 2/2 step 100/100 (100%) loss 1.0000" in lines[-2]
    assert lines[-1].startswith("adapter: done, 100 steps in 0:01:40")


def test_eta_from_average_rate():
    clock, lines = FakeClock(), []
    progress = ProgressReporter(lines.append, total_steps=40, label="gen", unit="answer", every_s=0, clock=clock)
    clock.now += 20.0
    progress.step(n=10)  # 10 answers in 20 s -> 0.5/s -> 30 left -> 60 s
    assert progress.eta == 60.0
    assert "answer 10/40 (25%)" in lines[-1] and "ETA 0:01:00" in lines[-1] and "0.50 answer/s" in lines[-1]


def test_without_totals_logs_step_and_loss_without_eta():
    clock, lines = FakeClock(), []
    progress = ProgressReporter(lines.append, clock=clock)
    clock.now += 2
    progress.step(loss=0.5)
    assert lines == ["progress: step 1 loss 0.5000 | 0.50 step/s | elapsed 0:00:02"]
    assert progress.eta is None


def test_throttled_log_forwards_first_then_every_period_and_flushes_the_last():
    clock, lines = FakeClock(), []
    log = ThrottledLog(lines.append, every_s=5, clock=clock)
    for i in range(1, 21):
        clock.now += 1
        log(f"generated {i}/20")
    log.flush()
    assert lines[0] == "generated 1/20"
    assert lines[-1] == "generated 20/20"
    assert len(lines) == 5  # 1, 6, 11, 16, flush(20)


def test_format_duration():
    assert format_duration(3725) == "1:02:05"
    assert format_duration(None) == "?"
    assert format_duration(float("inf")) == "?"


def test_lines_reach_the_dagster_run_log():
    """Wired as `log=context.log.info`, every line lands in the run's event log."""

    @dg.asset
    def long_job(context: dg.AssetExecutionContext) -> None:
        progress = ProgressReporter(context.log.info, total_steps=3, total_epochs=1, label="long_job", every_s=0)
        for _ in range(3):
            progress.step(loss=1.0)
        progress.epoch_end(loss=1.0)

    with dg.instance_for_test() as instance:
        result = dg.materialize([long_job], instance=instance)
        assert result.success
        messages = [
            record.user_message
            for record in instance.all_logs(result.run_id)
            if record.user_message.startswith("long_job:")
        ]
    assert len(messages) == 4
    assert "step 3/3 (100%)" in messages[2] and "ETA" in messages[2]


def test_a_reporter_created_at_the_first_step_does_not_invent_a_rate():
    """Trainers that build the reporter on their first step event: no absurd step/s or ETA."""
    clock, lines = FakeClock(), []
    progress = ProgressReporter(lines.append, total_steps=10, every_s=0, clock=clock)
    progress.step(loss=3.0)  # no time has passed since the reporter was created
    assert progress.rate is None and "ETA ?" in lines[-1] and "step/s" not in lines[-1]
    clock.now += 4
    progress.step(n=2, loss=2.0)  # 2 steps in 4 s after the first
    assert progress.rate == 0.5 and progress.eta == 14.0
    assert "0.50 step/s" in lines[-1] and "ETA 0:00:14" in lines[-1]


def test_text_progress_from_generation_gets_a_rate_and_eta():
    """Generation reports "generated i/N answers": `message` turns that into counts, rate and ETA."""
    clock, lines = FakeClock(), []
    progress = ProgressReporter(lines.append, label="summary_inference_samples", unit="answer", every_s=30, clock=clock)
    for done in range(8, 81, 8):  # a batch of 8 answers every 10 s
        clock.now += 10
        progress.message(f"generated {done}/80 answers")
    assert progress.steps_done == 80 and progress.total_steps == 80
    assert len(lines) == 4  # first, every 30 s, last
    assert lines[1].startswith("summary_inference_samples: answer 32/80 (40%)") and "ETA 0:01:00" in lines[1]
    progress.message("retrying 3 bad answers")
    assert lines[-1] == "summary_inference_samples: retrying 3 bad answers"
