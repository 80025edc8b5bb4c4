"""The environment the tests run podman in: the one deploy/podman/env.sh sets up for the scripts there
(CONTAINERS_CONF with runc, cgroupfs and ulimits this machine allows)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ENV_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "podman" / "env.sh"


def podman_environment() -> dict[str, str]:
    """os.environ plus what env.sh exports (call only where podman is installed: env.sh exits without it)."""
    script = f'source "{ENV_SCRIPT}" && printf "%s" "$CONTAINERS_CONF"'
    conf = subprocess.run(["bash", "-c", script], text=True, capture_output=True, check=True).stdout
    return os.environ | {"CONTAINERS_CONF": conf}
