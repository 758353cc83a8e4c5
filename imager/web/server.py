"""What the station's and the portal's HTTPS servers (uvicorn) share."""

from __future__ import annotations

# TLS 1.2 clients (curl, browsers) get forward-secret AEAD suites only; TLS 1.3's are fixed.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
