"""How many CPUs a training process may keep busy: the ones it may run on (its affinity, which
``taskset`` and Kubernetes' static CPU manager set), capped by its cgroup's CPU quota (a container's
``resources.limits.cpu``). torch's own default counts the host's cores, and more busy threads than
CPUs makes every thread wait for the others at each operation."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def cgroup_cpu_limit(path: Path = CGROUP_CPU_MAX) -> int | None:
    """The quota in whole CPUs (rounded up), or None without one."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def usable_cpus(cgroup_cpu_max: Path = CGROUP_CPU_MAX) -> int:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = cgroup_cpu_limit(cgroup_cpu_max)
    return max(1, min(affinity, limit) if limit else affinity)
