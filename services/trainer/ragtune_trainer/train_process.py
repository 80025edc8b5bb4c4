"""One job's training, in its own process: ``python -m ragtune_trainer.train_process SPEC.json``.

Reports to the trainer service with JSON lines on its standard output (everything libraries print
goes to standard error instead) and dies with the service (parent-death signal), so a killed
trainer never leaves an orphan training. The service cancels a job by killing this process.
Events: ``started``, ``progress``, ``eval``, ``checkpoint``, ``message``, then ``done`` or ``error``.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from ragtune_trainer.datasets import Example, read_dataset
from ragtune_trainer.jobspec import JobConfig
from ragtune_trainer.masks import TemplateError, TokenizedExample, tokenize_example

log = logging.getLogger("ragtune_trainer.train_process")


class JobFailed(Exception):
    def __init__(self, code: str, message: str, param: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


class EventWriter:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self.stream.write(json.dumps({"kind": kind, "data": data}) + "\n")
        self.stream.flush()


def _events_to_stdout() -> EventWriter:
    """Keep the real stdout for events; point fd 1 (and print()) at stderr."""
    events = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return EventWriter(events)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def split_validation(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Deterministic held-out split: the same seed gives the same split after a resume."""
    if not fraction:
        return examples, []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    held = set(order[: math.ceil(len(examples) * fraction)])
    return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]


def tokenize_all(tokenizer: Any, examples: list[Example], max_len: int, param: str) -> list[TokenizedExample]:
    tokenized, too_long = [], []
    for example in examples:
        try:
            item = tokenize_example(tokenizer, example)
        except TemplateError as exc:
            raise JobFailed("unsupported_chat_template", str(exc), "model") from None
        if len(item.input_ids) > max_len:
            too_long.append(f"line {example.line} ({len(item.input_ids)} tokens)")
        tokenized.append(item)
    if too_long:
        shown = ", ".join(too_long[:20]) + (f" and {len(too_long) - 20} more" if len(too_long) > 20 else "")
        raise JobFailed("invalid_file", f"examples longer than max_seq_length {max_len}: {shown}", param)
    return tokenized


def _resume_counters(checkpoint: str | None) -> dict[str, int]:
    from ragtune_trainer.training import PROGRESS_FILE

    path = Path(checkpoint or "/nonexistent") / PROGRESS_FILE
    return json.loads(path.read_text()) if path.is_file() else {"trained_tokens": 0}


def _set_threads(torch_threads: int) -> int:
    """Intra-op threads: as many as CPUs this process may use (or as set); one inter-op thread."""
    import torch

    from ragtune_trainer.cpus import usable_cpus

    threads = torch_threads or usable_cpus()
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    return threads


def train(spec: dict[str, Any], emit: EventWriter, threads: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

    from ragtune_trainer import attention
    from ragtune_trainer.collation import Collator, PackingCollator, PaddingCollator
    from ragtune_trainer.loop import TokenBudgetTrainer
    from ragtune_trainer.precision import autocast_dtype, resolve_precision
    from ragtune_trainer.training import CountingDataset, EarlyStopping, EvalDataset, EventCallback

    config = JobConfig.from_json(spec["config"])
    job_dir = Path(spec["job_dir"])
    tokenizer = AutoTokenizer.from_pretrained(spec["base_model_path"])
    train_examples, held_out = split_validation(
        read_dataset(Path(spec["train_path"])), config.validation_fraction, config.seed
    )
    if spec.get("validation_path"):
        held_out = read_dataset(Path(spec["validation_path"]))
    train_set = tokenize_all(tokenizer, train_examples, config.max_seq_length, "training_file")
    eval_param = "validation_file" if spec.get("validation_path") else "training_file"
    eval_set = [t for t in tokenize_all(tokenizer, held_out, config.max_seq_length, eval_param) if t.trained_tokens]
    total = sum(len(t.input_ids) for t in train_set)
    trained = sum(t.trained_tokens for t in train_set)
    if trained == 0:
        raise JobFailed(
            "no_trainable_tokens",
            "no assistant tokens to train on: every assistant message of the training file has weight 0",
            "training_file",
        )
    train_set = [t for t in train_set if t.trained_tokens]  # an all-masked batch would give a NaN loss

    device = spec["device"]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = resolve_precision(config.precision, device)
    # packed rows on CPU: attention example by example (no masked square); elsewhere transformers' sdpa
    attn = attention.register() if config.packing and device == "cpu" else "sdpa"
    model = AutoModelForCausalLM.from_pretrained(spec["base_model_path"], dtype=torch.float32, attn_implementation=attn)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,  # type: ignore[arg-type]  # PEFT takes any number
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lora)
    counters = _resume_counters(spec.get("resume_from"))
    dataset = CountingDataset(train_set, counters["trained_tokens"])
    evaluates = bool(eval_set) and config.eval_interval_steps > 0
    args = TrainingArguments(
        output_dir=str(job_dir / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        num_train_epochs=config.n_epochs,
        learning_rate=config.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=max(0, int(0.03 * config.total_steps)),
        logging_strategy="steps",
        logging_steps=1,
        eval_strategy="steps" if evaluates else "no",
        eval_steps=config.eval_interval_steps or None,
        eval_on_start=evaluates,
        save_strategy="steps",
        save_steps=config.checkpoint_interval_steps,
        save_total_limit=spec["checkpoints_kept"],
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=device == "cpu",
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )
    callbacks: list[Any] = [EventCallback(emit, dataset, spec["progress_interval_s"])]
    if evaluates and config.early_stopping_patience:
        callbacks.append(EarlyStopping(emit, config.early_stopping_patience))
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    collator: Collator = PackingCollator(pad_id, config.row_tokens) if config.packing else PaddingCollator(pad_id)
    trainer = TokenBudgetTrainer(
        model=peft_model,
        args=args,
        train_dataset=dataset,
        eval_dataset=EvalDataset(eval_set) if evaluates else None,
        data_collator=collator,
        callbacks=callbacks,
        train_examples=train_set,
        eval_examples=eval_set if evaluates else [],
        group_by_length=not config.packing,
        autocast_dtype=autocast_dtype(precision),
    )
    resumed = spec.get("resume_from")
    emit(
        "started",
        {
            "train_examples": len(train_set),
            "validation_examples": len(eval_set) if evaluates else 0,
            "total_steps": config.n_epochs * math.ceil(len(train_set) / config.batch_size),
            "trained_token_fraction": trained / total,
            "resumed_from_step": int(Path(resumed).name.rsplit("-", 1)[1]) if resumed else 0,
            "device": device,
            "packing": config.packing,
            "row_tokens": config.row_tokens,
            "precision": precision,
            "attention": attn,
            "torch_threads": threads,
        },
    )
    rows = f"packed rows of up to {config.row_tokens} tokens" if config.packing else "padded rows"
    computes = "bfloat16 autocast" if precision == "bf16" else "float32"
    emit("message", {"message": f"training on {device}: {rows}, {computes}, {attn} attention, {threads} threads"})
    result = trainer.train(resume_from_checkpoint=resumed)
    adapter = job_dir / "adapter"
    staging = Path(tempfile.mkdtemp(prefix=".adapter-", dir=job_dir))
    try:
        peft_model.save_pretrained(str(staging))
        if adapter.exists():
            shutil.rmtree(adapter)
        os.replace(staging, adapter)  # the adapter appears only when complete
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    emit(
        "done",
        {
            "adapter_path": str(adapter),
            "step": trainer.state.global_step,
            "train_loss": float(result.training_loss),
            "trained_tokens": dataset.trained_tokens,
            "cpu_seconds": time.process_time(),
        },
    )


def main() -> int:
    emit = _events_to_stdout()
    _die_with_parent()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    spec = json.loads(Path(sys.argv[1]).read_text())
    try:
        threads = _set_threads(int(spec.get("torch_threads", 0)))
        train(spec, emit, threads)
    except JobFailed as exc:
        emit("error", {"code": exc.code, "message": exc.message, "param": exc.param})
        return 2
    except Exception as exc:
        log.exception("training crashed")
        emit("error", {"code": "training_crashed", "message": f"{type(exc).__name__}: {exc}", "param": ""})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
