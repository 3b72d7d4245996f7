"""One signing keyring for every node of a cluster, so a token from any node verifies on all.

The first node to start publishes its keyring to Redis (SET NX); every node then adopts the
one in Redis and writes it to its own ``keys.json``. Whoever can write to Redis already
controls every space, so the keys add no new exposure there.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import redis

from ..auth import Keyring

logger = logging.getLogger(__name__)

KEYRING_KEY = "th:keyring"


def shared_keyring(redis_url: str, path: Path) -> Keyring:
    """The cluster's keyring (blocking; called once while the app is built)."""
    local = Keyring.load_or_create(path)
    text = path.read_text()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        client.set(KEYRING_KEY, text, nx=True)
        shared = client.get(KEYRING_KEY)
    finally:
        client.close()
    if shared is None or shared == text:
        return local
    tmp = path.with_suffix(".cluster")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(str(shared))
    ring = Keyring.load(tmp)
    ring.save(path)
    tmp.unlink()
    logger.info("adopted the cluster's signing keys from Redis")
    return ring
