"""The baseline of trainer_throughput: a plain transformers ``Trainer`` + PEFT LoRA script, run as
its own process (like the trainer's training process): ``python -m bench.trainer_baseline SPEC.json``.

It trains on the same chat JSONL with the same settings as a trainer job: same base model dir, LoRA
r/alpha/dropout/targets, batch size, epochs, learning rate, linear schedule with the job's warm-up
(3 % of the steps), seed and data seed, float32 on CPU. Inputs and assistant-only labels come from
``ragtune_trainer.masks.tokenize_example`` and are right-padded by transformers'
``DataCollatorForSeq2Seq`` (pad id for inputs, -100 for labels), so both sides train on identical
token tensors in the same order. Nothing else: no checkpoints, no events, no token counting.

Prints one JSON line: ``trained_tokens`` (labels != -100 over every example handed out, i.e. the
sum per example times epochs, as the trainer counts them), ``train_s`` (from just before
``Trainer.train()`` to the log of the last optimizer step), ``train_return_s``, ``final_loss``.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ragtune_trainer.datasets import Example, Message
from ragtune_trainer.masks import tokenize_example


def _examples(path: Path) -> list[Example]:
    examples = []
    for line, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        messages = json.loads(raw)["messages"]
        examples.append(
            Example(line, tuple(Message(m["role"], m["content"], int(m["role"] == "assistant")) for m in messages))
        )
    return examples


def train(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    set_seed(spec["seed"])
    tokenizer = AutoTokenizer.from_pretrained(spec["base_model_path"])
    tokenizer.padding_side = "right"
    tokenized = [tokenize_example(tokenizer, e) for e in _examples(Path(spec["train_path"]))]
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
    peft_model = get_peft_model(model, lora)
    marks: dict[str, float] = {}

    class LastStep(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs and state.global_step >= state.max_steps:
                marks["last_step"], marks["loss"] = time.perf_counter(), float(logs["loss"])

    with tempfile.TemporaryDirectory(prefix="plain-trainer-") as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=spec["batch_size"],
            num_train_epochs=spec["epochs"],
            learning_rate=spec["learning_rate"],
            lr_scheduler_type="linear",
            warmup_steps=max(0, int(0.03 * steps)),
            logging_steps=1,
            save_strategy="no",
            seed=spec["seed"],
            data_seed=spec["seed"],
            use_cpu=spec.get("device", "cpu") == "cpu",  # the device the job side is pinned to too
            report_to="none",
            disable_tqdm=True,
            remove_unused_columns=False,
            dataloader_num_workers=0,
        )
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
        trainer = Trainer(
            model=peft_model, args=args, train_dataset=rows, data_collator=collator, callbacks=[LastStep()]
        )
        start = time.perf_counter()
        trainer.train()
        returned = time.perf_counter()
    return {
        "trained_tokens": spec["epochs"] * sum(t.trained_tokens for t in tokenized),
        "input_tokens": spec["epochs"] * sum(len(t.input_ids) for t in tokenized),
        "steps": trainer.state.global_step,
        "train_s": marks["last_step"] - start,
        "train_return_s": returned - start,
        "final_loss": marks["loss"],
        "torch_threads": torch.get_num_threads(),
    }


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    result = train(spec)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
