"""ragtune trainer: durable LoRA fine-tuning jobs (PEFT), dataset validation, RAFT data building."""
