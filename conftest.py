"""Fixture modules shared by every test tier (session-scoped: one database, one engine per run)."""

pytest_plugins = ["tests.fixtures.retriever", "tests.fixtures.generator", "tests.fixtures.trainer"]
