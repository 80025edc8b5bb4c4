"""The baselines of trainer_throughput, each run as its own process (like the trainer's training
process): ``python -m bench.trainer_baseline SPEC.json``, ``kind`` in the spec choosing

- ``plain``: transformers ``Trainer`` + PEFT LoRA, right-padded batches of ``batch_size`` examples
  (``DataCollatorForSeq2Seq``: pad id for inputs, -100 for labels), the model's own loss;
- ``trl``: TRL's ``SFTTrainer`` with ``padding_free=True`` (each batch flattened into one row, position
  ids restarting per example, as its docs recommend), PEFT through its ``peft_config``. TRL's SFT
  defaults made for GPUs are set back to the others' (float32, no gradient checkpointing).

Both train on the same chat JSONL with the same settings as a trainer job: same base model dir, LoRA
r/alpha/dropout/targets, batch size, epochs, learning rate, linear schedule with the job's warm-up
(3 % of the steps), seed, float32 on ``device``, ``threads`` intra-op threads. Inputs and
assistant-only labels come from ``ragtune_trainer.masks.tokenize_example``, so every side trains on
identical tokens and loss masks.

Validation: at step 0 and every ``eval_every`` steps the model's loss over every token of the
validation file is computed one example at a time (``ragtune_trainer.loop.target_loss``: summed
cross-entropy / trained tokens, the quantity the trainer reports) with the clock paused, so
``train_s`` excludes evaluation. Prints one ``RESULT`` JSON line: ``train_s`` (from the end of
``Trainer.train()``'s set-up, ``on_train_begin``, to the end of the last optimizer step, evaluations
excluded), the evaluations with the training seconds at each, ``final_loss``, the thread count.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ragtune_trainer.datasets import read_dataset
from ragtune_trainer.masks import TokenizedExample, tokenize_example


def _tokenized(tokenizer: Any, path: Path) -> list[TokenizedExample]:
    return [tokenize_example(tokenizer, e) for e in read_dataset(path)]


class Clock:
    """Training seconds since ``start()``, less the paused (evaluation) time."""

    def __init__(self) -> None:
        self.started = 0.0
        self.paused = 0.0

    def start(self) -> None:
        self.started, self.paused = time.perf_counter(), 0.0

    def training_s(self) -> float:
        return time.perf_counter() - self.started - self.paused


def _callbacks(clock: Clock, validation: list[TokenizedExample], every: int, pad_id: int, marks: dict[str, Any]) -> Any:
    import torch
    from transformers import TrainerCallback

    from ragtune_trainer.collation import PaddingCollator
    from ragtune_trainer.loop import target_loss

    collate = PaddingCollator(pad_id)

    class Probe(TrainerCallback):
        def _evaluate(self, model: Any, step: int) -> None:
            begun = time.perf_counter()
            was_training = model.training
            model.eval()
            total, count = 0.0, 0
            with torch.no_grad():
                for example in validation:
                    summed, n = target_loss(
                        model, collate([{"input_ids": example.input_ids, "labels": example.labels}])
                    )
                    total, count = total + float(summed), count + n
            model.train(was_training)
            clock.paused += time.perf_counter() - begun
            marks["evals"].append({"step": step, "eval_loss": total / count, "train_s": clock.training_s()})

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            clock.start()  # set-up done: training (and the step-0 evaluation, paused) begins
            if validation:
                self._evaluate(model, 0)

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            if state.global_step >= state.max_steps:
                marks["last_step_s"] = clock.training_s()
            if validation and every and state.global_step % every == 0:
                self._evaluate(model, state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                marks["loss"] = float(logs["loss"])

    return Probe()


def train(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    torch.set_num_threads(spec["threads"])
    set_seed(spec["seed"])
    tokenizer = AutoTokenizer.from_pretrained(spec["base_model_path"])
    tokenizer.padding_side = "right"
    tokenized = _tokenized(tokenizer, Path(spec["train_path"]))
    validation = _tokenized(tokenizer, Path(spec["validation_path"])) if spec.get("validation_path") else []
    rows = [{"input_ids": t.input_ids, "labels": t.labels} for t in tokenized]
    steps = spec["epochs"] * math.ceil(len(rows) / spec["batch_size"])
    model = AutoModelForCausalLM.from_pretrained(spec["base_model_path"], dtype=torch.float32)
    lora = LoraConfig(
        r=spec["r"],
        lora_alpha=spec["alpha"],
        lora_dropout=spec["dropout"],
        target_modules=spec["target_modules"],
        task_type="CAUSAL_LM",
    )
    clock = Clock()
    marks: dict[str, Any] = {"evals": []}
    probe = _callbacks(clock, validation, spec.get("eval_every", 0), int(tokenizer.pad_token_id), marks)
    common = {
        "per_device_train_batch_size": spec["batch_size"],
        "num_train_epochs": spec["epochs"],
        "learning_rate": spec["learning_rate"],
        "lr_scheduler_type": "linear",
        "warmup_steps": max(0, int(0.03 * steps)),
        "logging_steps": 1,
        "save_strategy": "no",
        "eval_strategy": "no",
        "seed": spec["seed"],
        "data_seed": spec["seed"],
        "use_cpu": spec.get("device", "cpu") == "cpu",  # the device the job side is pinned to too
        "report_to": "none",
        "disable_tqdm": True,
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
        "bf16": bool(spec.get("bf16")),  # the Trainer's own autocast (on CPU too); weights stay float32
    }
    with tempfile.TemporaryDirectory(prefix=f"{spec['kind']}-trainer-") as out:
        trainer = _trainer(spec["kind"], model, lora, tokenizer, rows, out, common, probe)
        trainer.train()
        returned = clock.training_s()
    return {
        "trained_tokens": spec["epochs"] * sum(t.trained_tokens for t in tokenized),
        "input_tokens": spec["epochs"] * sum(len(t.input_ids) for t in tokenized),
        "steps": trainer.state.global_step,
        "train_s": marks["last_step_s"],
        "train_return_s": returned,
        "final_loss": marks["loss"],
        "evals": marks["evals"],
        "torch_threads": torch.get_num_threads(),
    }


def _trainer(
    kind: str, model: Any, lora: Any, tokenizer: Any, rows: list[dict[str, Any]], out: str, common: Any, probe: Any
) -> Any:
    if kind == "plain":
        from peft import get_peft_model
        from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
        return Trainer(
            model=get_peft_model(model, lora),
            args=TrainingArguments(output_dir=out, **common),
            train_dataset=rows,
            data_collator=collator,
            callbacks=[probe],
        )
    if kind == "trl":
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        config = SFTConfig(
            output_dir=out,
            padding_free=True,
            max_length=None,
            gradient_checkpointing=False,
            **common,
        )
        return SFTTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(rows),  # input_ids + labels: TRL keeps the labels as given
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=[probe],
        )
    raise ValueError(f"unknown baseline {kind!r}")


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    result = train(spec)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
