"""The ``ragtune`` command: start the stack, ingest, ask with citations, fine-tune, list, evaluate."""
