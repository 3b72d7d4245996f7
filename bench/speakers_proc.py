"""Child process for :mod:`bench.stage_cpu`: N WHIP speakers publishing tones, so that
their CPU is not the node's. ``python -m bench.speakers_proc SPEC.json SECONDS``.

Prints ``READY <n>`` once all are connected, runs until SECONDS pass, stdin closes or
SIGTERM arrives, then closes every session. SPEC: ``{"whip_url": ..., "tokens": [...]}``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from townhall.stage import RtcSettings, ToneTrack, WhipClient

from .common import LOOPBACK


async def main(spec_path: str, seconds: float) -> int:
    with open(spec_path) as f:
        spec = json.load(f)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    clients = [
        WhipClient(spec["whip_url"], token, RtcSettings(announced_address=LOOPBACK))
        for token in spec["tokens"]
    ]
    try:
        for i, client in enumerate(clients):
            await client.publish(ToneTrack(200.0 + 37.0 * i, amplitude=0.1))
        await asyncio.gather(*(c.wait_connected(20) for c in clients))
        print(f"READY {len(clients)}", flush=True)
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except TimeoutError:
            pass
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], float(sys.argv[2]))))
