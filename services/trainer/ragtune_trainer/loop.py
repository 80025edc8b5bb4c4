"""The Hugging Face Trainer as the training process runs it: token-budget batches, the loss computed
only where there is something to learn, a token-weighted validation loss, real tokens counted.

The loss is the mean cross-entropy over every trained token of the step (assistant tokens of
weight-1 turns), as transformers computes it for a causal LM (labels shifted by one, summed, divided
by the step's number of trained tokens). Only those positions go through the LM head: a 135M model
spends about a fifth of its work and most of its memory traffic projecting every position onto a
49k vocabulary, and most positions of a chat example (system prompt, question, context) carry no
loss. Models whose logits are more than the LM head's projection (soft-capping, scaling) take the
model's own forward and its full logits instead.

With an autocast dtype (``ragtune_trainer.precision``) the training forward runs under autocast and
the backward follows it; the weights and optimizer state stay float32. Evaluation runs in float32,
so a validation loss means the same whatever the precision of training.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from transformers import PreTrainedModel, Trainer

from ragtune_trainer.batching import TokenBudgetBatches, evaluation_batches
from ragtune_trainer.collation import REAL_TOKENS
from ragtune_trainer.masks import IGNORE_INDEX, TokenizedExample

# config fields of models whose logits are more than the LM head's projection
_LOGIT_TRANSFORMS = (
    "final_logit_softcapping",
    "logit_scale",
    "logits_scaling",
    "output_multiplier",
    "lm_head_multiplier",
)


def _causal_lm(model: torch.nn.Module) -> PreTrainedModel:
    """The transformers model under a PEFT wrapper (LoRA layers injected in place)."""
    get_base_model = getattr(model, "get_base_model", None)
    inner = get_base_model() if callable(get_base_model) else model
    if not isinstance(inner, PreTrainedModel):
        raise TypeError(f"not a transformers model: {type(inner).__name__}")
    return inner


def projects_plainly(model: PreTrainedModel) -> bool:
    """True when logits are the LM head applied to the decoder's last hidden states, nothing more."""
    config = model.config.get_text_config()
    if any(getattr(config, name, None) is not None for name in _LOGIT_TRANSFORMS):
        return False
    return model.get_output_embeddings() is not None and model.base_model is not model


def target_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """(summed cross-entropy, number of targets) of a collated batch: position i predicts label i+1."""
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids")}
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    causal_lm = _causal_lm(model)
    if projects_plainly(causal_lm):
        hidden = causal_lm.base_model(**inputs, use_cache=False).last_hidden_state
        logits = causal_lm.get_output_embeddings()(hidden[:, :-1][keep])
    else:
        logits = model(**inputs, use_cache=False).logits[:, :-1][keep]
    total = torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="sum")
    return total, int(keep.sum())


class TokenBudgetTrainer(Trainer):
    """``Trainer`` with the batches of :mod:`ragtune_trainer.batching`, :func:`target_loss`, and an
    evaluation that averages over every validation token (independent of how batches are cut)."""

    def __init__(
        self,
        *args: Any,
        train_examples: list[TokenizedExample],
        eval_examples: list[TokenizedExample],
        group_by_length: bool,
        autocast_dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.autocast_dtype = autocast_dtype
        self.train_lengths = [len(t.input_ids) for t in train_examples]
        self.eval_lengths = [len(t.input_ids) for t in eval_examples]
        self.group_by_length = group_by_length

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_lengths) / self.args.per_device_train_batch_size)

    @property
    def budget_tokens(self) -> int:
        """The tokens of an average step: one epoch's tokens / its steps."""
        return max(1, round(sum(self.train_lengths) / self.steps_per_epoch))

    def _loader(self, dataset: Dataset[Any], batch_sampler: Any) -> DataLoader[Any]:
        loader = DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=self.data_collator, num_workers=0)
        prepared: DataLoader[Any] = self.accelerator.prepare(loader)
        return prepared

    def get_train_dataloader(self) -> DataLoader[Any]:
        if self.train_dataset is None:
            raise ValueError("training needs a train_dataset")
        sampler = TokenBudgetBatches(self.train_lengths, self.steps_per_epoch, self.args.seed, self.group_by_length)
        return self._loader(self.train_dataset, sampler)

    def get_eval_dataloader(self, eval_dataset: Any = None) -> DataLoader[Any]:
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        if dataset is None or isinstance(dataset, (str, dict)):
            raise ValueError("evaluation needs the eval_dataset given at construction")
        return self._loader(dataset, evaluation_batches(self.eval_lengths, self.budget_tokens))

    def training_step(
        self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """Counts the step's real tokens into ``state.num_input_tokens_seen`` (the collators know them;
        transformers' own count would take a packed row's padding segment for tokens)."""
        real = inputs.pop(REAL_TOKENS, None)
        if real is not None:
            self.state.num_input_tokens_seen += int(real)
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        with torch.autocast(self.args.device.type, self.autocast_dtype, enabled=self.autocast_dtype is not None):
            total, count = target_loss(model, inputs)
        loss = total / max(int(num_items_in_batch) if num_items_in_batch is not None else count, 1)
        return (loss, {}) if return_outputs else loss

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        start = time.monotonic()
        model = self.model
        assert model is not None
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in self.get_eval_dataloader(eval_dataset):
                summed, n = target_loss(model, self._prepare_inputs(batch))
                total, count = total + float(summed), count + n
        metrics = {
            f"{metric_key_prefix}_loss": total / max(count, 1),
            f"{metric_key_prefix}_runtime": round(time.monotonic() - start, 4),
        }
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
