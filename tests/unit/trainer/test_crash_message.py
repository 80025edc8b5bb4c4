"""A training process that ends without a result is explained in words a user can act on."""

from __future__ import annotations

import signal

from ragtune_trainer.runner import crash_message


def test_a_kill_names_the_signal_and_the_out_of_memory_cause() -> None:
    killed = crash_message(-signal.SIGKILL)
    assert "SIGKILL" in killed and "out-of-memory" in killed and "batch_size" in killed
    assert crash_message(-signal.SIGSEGV) == "the training process was killed (SIGSEGV)"
    assert crash_message(-200) == "the training process was killed (signal 200)"
    assert crash_message(3) == "the training process exited with code 3"
    assert crash_message(None) == "the training process exited with code None"
