"""The broker password: from a file, an environment variable or a systemd credential."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from edged.config import MqttConfig, WebAuthConfig
from edged.errors import EdgedError


def _read(path: Path, key: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgedError(f"{key}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
                         ) from None
    return text.rstrip("\r\n")  # files usually end with a newline that is not the password


def resolve_password(cfg: MqttConfig | WebAuthConfig, environ: Mapping[str, str] | None = None,
                     section: str = "mqtt") -> str | None:
    """The password, or None when none is configured; EdgedError naming the key otherwise.
    The value itself never appears in an error. `cfg` is any config section with the three
    password_* keys (mqtt, web.auth); `section` names it in errors."""
    env = os.environ if environ is None else environ
    if cfg.password_file is not None:
        return _read(Path(cfg.password_file), f"{section}.password_file")
    if cfg.password_env is not None:
        value = env.get(cfg.password_env)
        if value is None:
            raise EdgedError(f"{section}.password_env: the environment variable "
                             f"{cfg.password_env} is not set")
        return value
    if cfg.password_credential is not None:
        folder = env.get("CREDENTIALS_DIRECTORY")
        if not folder:
            raise EdgedError(f"{section}.password_credential: $CREDENTIALS_DIRECTORY is not set "
                             "(use LoadCredential= in the systemd unit)")
        return _read(Path(folder) / cfg.password_credential, f"{section}.password_credential")
    return None
