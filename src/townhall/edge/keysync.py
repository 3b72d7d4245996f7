"""Write the cluster's signing keyring (kept in Redis by the nodes) to a ``keys.json`` an edge
can load, on a machine that has no node data folder.

Nodes started with ``--redis`` share one keyring stored under
:data:`townhall.cluster.keys.KEYRING_KEY` (see :mod:`townhall.cluster.keys`). An edge needs the
same keys to check tickets, in the file format ``townhall edge run --keys`` reads::

    python -m townhall.edge.keysync --redis redis://10.0.0.9:6379/0 --out /etc/townhall/keys.json
    townhall edge run --origin http://10.0.0.5:8080 --keys /etc/townhall/keys.json --redis ...

The file is written with mode 0600 (it holds the HMAC secrets) and replaced atomically. After a
key rotation, run it again and restart the edge.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import redis

from ..cluster.keys import KEYRING_KEY
from .settings import EdgeSettingsError, load_edge_keys

logger = logging.getLogger(__name__)


def keyring_text(redis_url: str, timeout: float = 5.0) -> str:
    """The keyring document the nodes published in Redis (blocking).

    Raises :class:`EdgeSettingsError` if no node has published one yet or it is not a keyring.
    """
    client = redis.Redis.from_url(
        redis_url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    try:
        raw = client.get(KEYRING_KEY)
    finally:
        client.close()
    if raw is None:
        raise EdgeSettingsError(
            f"no keyring in Redis under {KEYRING_KEY!r}: start a node with --redis first"
        )
    text = str(raw)
    try:
        keys = json.loads(text)["keys"]
    except (ValueError, KeyError, TypeError) as exc:
        raise EdgeSettingsError(f"the keyring in Redis is not understood: {exc}") from None
    if not isinstance(keys, list) or not keys:
        raise EdgeSettingsError("the keyring in Redis holds no keys")
    return text


def write_keys(text: str, path: Path) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte, replacing it atomically,
    then check that an edge can load it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    try:
        load_edge_keys(tmp)
    except EdgeSettingsError:
        tmp.unlink()
        raise
    os.replace(tmp, path)


def sync_keys(redis_url: str, path: Path) -> Path:
    """Fetch the cluster keyring from ``redis_url`` and write it to ``path`` for an edge."""
    write_keys(keyring_text(redis_url), path)
    logger.info("wrote the cluster keyring to %s", path)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m townhall.edge.keysync --redis URL --out PATH``."""
    parser = argparse.ArgumentParser(prog="python -m townhall.edge.keysync", description=__doc__)
    parser.add_argument("--redis", required=True, help="Redis URL the nodes use (--redis)")
    parser.add_argument("--out", required=True, type=Path, help="keys.json to write (0600)")
    args = parser.parse_args(argv)
    try:
        sync_keys(args.redis, args.out)
    except (EdgeSettingsError, redis.RedisError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
