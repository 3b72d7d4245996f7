"""``python -m bench [--only NAME ...] [--quick]``: run the benchmarks, print their figures,
write ``bench/results/report.json`` and ``report.md``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from . import (
    edge_request_cost,
    icecast_compare,
    join_throughput,
    livekit_room,
    mouth_to_ear,
    n_minus_1,
    origin_independence,
    report,
    simulate_validation,
    stage_cpu,
    start_on_time,
)
from .common import BenchResult, machine_info

BENCHMARKS: dict[str, Callable[[bool], BenchResult]] = {
    mouth_to_ear.NAME: mouth_to_ear.run,
    n_minus_1.NAME: n_minus_1.run,
    stage_cpu.NAME: stage_cpu.run,
    join_throughput.NAME: join_throughput.run,
    origin_independence.NAME: origin_independence.run,
    icecast_compare.NAME: icecast_compare.run,
    edge_request_cost.NAME: edge_request_cost.run,
    livekit_room.NAME: livekit_room.run,
    start_on_time.NAME: start_on_time.run,
    simulate_validation.NAME: simulate_validation.run,  # after the runs it checks
}
RESULTS = Path(__file__).resolve().parent / "results"


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds every context manager: nodes, children


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only these ({', '.join(BENCHMARKS)})",
    )
    parser.add_argument("--quick", action="store_true", help="short windows (under 3 minutes)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="report folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _terminate)
    machine = machine_info()
    names = args.only or list(BENCHMARKS)
    results: list[BenchResult] = []
    for name in names:
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        started = time.monotonic()
        try:
            result = BENCHMARKS[name](args.quick)
        except Exception as exc:
            traceback.print_exc()
            result = BenchResult(name, "failed before producing figures", error=repr(exc))
        result.raw["elapsed_s"] = round(time.monotonic() - started, 1)
        for figure in result.figures:
            print(f"   {report.figure_line(figure)}", flush=True)
        for note in result.notes:
            print(f"   note: {note}", flush=True)
        if result.error:
            print(f"   FAILED: {result.error}", flush=True)
        results.append(result)
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    json_path, md_path = report.write(args.results, results, machine, command.strip())
    print(f"wrote {json_path} and {md_path}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
