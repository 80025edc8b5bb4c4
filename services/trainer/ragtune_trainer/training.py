"""The pieces the training process plugs into the Hugging Face Trainer: a dataset that counts the
tokens it hands out, and callbacks that report progress, evaluations and checkpoints as events and
stop early when evaluation stops improving."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ragtune_trainer.masks import TokenizedExample

Emit = Callable[[str, dict[str, Any]], None]
PROGRESS_FILE = "ragtune_progress.json"  # written into each checkpoint: counters to resume from


class CountingDataset(torch.utils.data.Dataset):
    """Training examples; counts the trained (loss-carrying) tokens handed to the training loop."""

    def __init__(self, examples: list[TokenizedExample], trained_tokens: int = 0) -> None:
        self.examples = examples
        self.trained_tokens = trained_tokens

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        example = self.examples[index]
        self.trained_tokens += example.trained_tokens
        return {"input_ids": example.input_ids, "labels": example.labels}


class EvalDataset(torch.utils.data.Dataset):
    def __init__(self, examples: list[TokenizedExample]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return {"input_ids": self.examples[index].input_ids, "labels": self.examples[index].labels}


class EventCallback(TrainerCallback):
    """Progress (throttled), evaluations and checkpoints, as events for the trainer service."""

    def __init__(self, emit: Emit, counter: CountingDataset, interval_s: float) -> None:
        self.emit = emit
        self.counter = counter
        self.interval_s = interval_s
        self._last_emit = 0.0
        self._last_tokens = 0
        self._last_time = time.monotonic()
        self._run_start = time.monotonic()
        self._first_step: int | None = None

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if self._first_step is None:
            self._first_step = state.global_step
            self._run_start = self._last_time = time.monotonic()
            self._last_tokens = state.num_input_tokens_seen

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        if not logs or "loss" not in logs:
            return
        now = time.monotonic()
        last = state.global_step >= state.max_steps
        if not last and now - self._last_emit < self.interval_s:
            return
        done = state.global_step - (self._first_step or 0)
        per_step = (now - self._run_start) / done if done > 0 else 0.0
        elapsed = max(now - self._last_time, 1e-9)
        self.emit(
            "progress",
            {
                "step": state.global_step,
                "total_steps": state.max_steps,
                "epoch": float(state.epoch or 0.0),
                "train_loss": float(logs["loss"]),
                "learning_rate": float(logs.get("learning_rate", 0.0)),
                "tokens_per_second": (state.num_input_tokens_seen - self._last_tokens) / elapsed,
                "eta_seconds": per_step * (state.max_steps - state.global_step),
                "trained_tokens": self.counter.trained_tokens,
                "cpu_seconds": time.process_time(),  # this process, every thread
            },
        )
        self._last_emit, self._last_time, self._last_tokens = now, now, state.num_input_tokens_seen

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        if metrics and "eval_loss" in metrics:
            self.emit("eval", {"step": state.global_step, "eval_loss": float(metrics["eval_loss"])})

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        path = Path(args.output_dir or ".") / f"checkpoint-{state.global_step}"
        counters = {"trained_tokens": self.counter.trained_tokens}
        (path / PROGRESS_FILE).write_text(json.dumps(counters))
        kept = sorted(str(p) for p in Path(args.output_dir or ".").glob("checkpoint-*") if p != path)
        self.emit("checkpoint", {"step": state.global_step, "path": str(path), "kept": kept})


class EarlyStopping(TrainerCallback):
    """Stops after ``patience`` evaluations without a lower eval loss. On resume the history of
    evaluations comes back from the checkpoint's trainer state, so patience carries over."""

    def __init__(self, emit: Emit, patience: int, min_delta: float = 0.0) -> None:
        self.emit = emit
        self.patience = patience
        self.min_delta = min_delta
        self.best: float | None = None
        self.bad = 0

    def observe(self, loss: float) -> bool:
        """Record an evaluation; True when training should stop."""
        if self.best is None or loss < self.best - self.min_delta:
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
        return self.patience > 0 and self.bad >= self.patience

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self.best, self.bad = None, 0
        for entry in state.log_history:
            if "eval_loss" in entry:
                self.observe(float(entry["eval_loss"]))

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        if metrics and "eval_loss" in metrics and self.observe(float(metrics["eval_loss"])):
            control.should_training_stop = True
            self.emit(
                "message",
                {
                    "message": f"early stopping at step {state.global_step}: no eval loss below {self.best:.4f}"
                    f" for {self.bad} evaluations"
                },
            )
