"""The agent's own key pair (Ed25519), made on its first start, kept 0600.

The key is the agent's identity: whoever holds the file is that agent, so it
stays where the agent runs (the live system's memory, the dock station's data
dir, the USB stick's spool of an offline agent) and is never sent anywhere;
the station knows only the public key."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from imager.errors import UsageError
from imager.host.files import write_atomic


def agent_key(path: Path) -> Ed25519PrivateKey:
    """The key at `path`, made there (0600) on first use."""
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        write_atomic(path, key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
        return key
    if os.stat(path).st_mode & 0o077:
        raise UsageError(f"the agent's key {path} is readable by others: chmod 600 {path}")
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise UsageError(f"the agent's key {path} cannot be read ({exc}): move it away to "
                         "make a new one (the agent then enrols again)") from exc
    if not isinstance(loaded, Ed25519PrivateKey):
        raise UsageError(f"{path} is not an Ed25519 key: move it away to make a new one")
    return loaded
