"""Status names shared across the wire: the trainer's jobs, the fine-tuning jobs the gateway serves,
the gateway's evaluations, and the harness that waits on them all use the same words."""

FINAL = ("succeeded", "failed", "cancelled")  # a job or evaluation in one of these never changes again
