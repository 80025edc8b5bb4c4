"""ragtune retriever service: documents in, ranked passages out."""
