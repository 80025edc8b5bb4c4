"""``ragtune eval``: RAG vs fine-tuning vs both, measured on the user's own question-answering data
through the public REST API (so it measures what users get), and retrieval-only evaluation on BEIR."""
