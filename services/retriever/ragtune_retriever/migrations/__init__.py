"""Versioned schema migrations of the retriever schema, applied in order at start-up."""
