"""Signals during training: both SIGINT and SIGTERM stop at the next step, a second one at once."""

import signal

import pytest

from tmc_lightning.training.interrupt import GracefulInterrupt, TrainingInterrupted


class FakeTrainer:
    world_size, global_step, current_epoch = 1, 57, 1

    def __init__(self):
        self.saved = []

    def save_checkpoint(self, path):
        self.saved.append(path)


@pytest.mark.parametrize(
    ("signum", "name", "code"), [(signal.SIGINT, "SIGINT", 130), (signal.SIGTERM, "SIGTERM", 143)]
)
def test_a_signal_stops_at_the_next_step_after_saving(tmp_path, signum, name, code):
    before = signal.getsignal(signum)
    cb, trainer = GracefulInterrupt(tmp_path / "last.ckpt"), FakeTrainer()
    cb.on_train_start(trainer, None)
    try:
        cb.on_train_batch_end(trainer, None, None, None, 0)  # no signal: nothing happens
        assert trainer.saved == []
        signal.getsignal(signum)(signum, None)  # the signal arrives mid-step
        assert cb.received == name
        assert signal.getsignal(signum) == before  # a second one is not caught again
        with pytest.raises(TrainingInterrupted) as stop:
            cb.on_train_batch_end(trainer, None, None, None, 0)
        assert trainer.saved == [tmp_path / "last.ckpt"] and stop.value.exit_code == code
        assert f"{name}: stopped at step 57 (epoch 1)" in str(stop.value)
    finally:
        cb.on_exception(trainer, None, None)
    assert signal.getsignal(signum) == before
