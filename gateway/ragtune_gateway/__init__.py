"""ragtune's REST gateway: OpenAI-dialect routes over the gRPC services, tenants and API keys, and the CLI."""
