"""The gateway's SQL, one module per resource (schema ``gateway``): plain functions over a pool,
returning dataclass rows; no HTTP and no gRPC here."""

SCHEMA = "gateway"
