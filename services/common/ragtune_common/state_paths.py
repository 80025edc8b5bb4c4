"""Places under the state directory (``RAGTUNE_STATE_DIR``) that more than one program reads: the
gateway writes its generated keys there on first start; the launcher and the CLI read them."""

from __future__ import annotations

from pathlib import Path


def gateway_dir(state_dir: Path) -> Path:
    return state_dir / "gateway"


def credentials_path(state_dir: Path) -> Path:
    """The admin key, the default tenant and its API key, written when no admin key is configured."""
    return gateway_dir(state_dir) / "credentials.json"
