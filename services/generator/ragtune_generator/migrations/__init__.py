"""Versioned schema migrations of the generator schema, applied in order at start-up."""
