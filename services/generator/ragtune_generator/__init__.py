"""ragtune generator service: a base model and its LoRA adapters, served by vLLM."""
