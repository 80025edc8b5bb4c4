"""The trainer's Prometheus series, in prometheus_client's default registry (which the service's
metrics port exports). One trainer per process, so module-level series."""

from __future__ import annotations

from prometheus_client import Gauge

QUEUE_DEPTH = Gauge(
    "ragtune_trainer_queue_depth",
    "Fine-tuning jobs waiting for a replica, over all replicas: queued, or left by a replica whose lease expired",
)
RUNNING_JOBS = Gauge("ragtune_trainer_running_jobs", "Fine-tuning jobs this replica is training now (0 or 1)")
