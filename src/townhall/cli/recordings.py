"""``townhall export`` and ``townhall clip``: a space's recording as one ``.m4a``, on the data
folder directly (no server needed; a live space's complete segments are exported too)."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from pathlib import Path

import typer

from .common import fail, node_config, out

_SPACE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_CLIP_SECONDS = 300.0


def recording_dir(data: Path, space_id: str) -> Path:
    """Where a space's programme is recorded."""
    return data / "spaces" / space_id / "hls"


def _space_exists(data: Path, space_id: str) -> bool:
    from ..store import SqliteStore

    async def run() -> bool:
        store = SqliteStore(data / "townhall.db")
        try:
            return await store.get_space(space_id) is not None
        finally:
            await store.close()

    return asyncio.run(run())


def _check_source(data: Path | None, space_id: str) -> Path:
    """The recording directory of ``space_id``; a clear CLI error if there is none."""
    config = node_config(data=data)
    if not _SPACE_ID.match(space_id):
        fail(f"{space_id!r} is not a space id")
    if not (config.data / "townhall.db").is_file():
        fail(f"{config.data} is not a townhall data folder (no townhall.db); use --data")
    if not _space_exists(config.data, space_id):
        fail(f"no space {space_id!r} in {config.data}")
    directory = recording_dir(config.data, space_id)
    if not (directory / "init.mp4").is_file() or not any(directory.glob("seg*.m4s")):
        fail(f"space {space_id!r} has no recording yet (it records from its start)")
    return directory


def _check_output(path: Path) -> Path:
    """Fail early (before any work) when ``path`` cannot be written."""
    path = path.expanduser()
    if path.is_dir():
        fail(f"{path} is a directory; give a file name such as {path / 'space.m4a'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        fail(f"cannot write {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        fail(f"cannot write {path}: permission denied")
    return path


def _recorded_seconds(directory: Path) -> float:
    from ..packaging.recorder import scan_recording

    segments = scan_recording(directory)
    return sum(s.duration for s in segments)


def _write(job: str, directory: Path, action: Callable[[], object]) -> None:
    import av

    try:
        action()
    except ValueError as exc:
        fail(f"{job}: {exc} (the recording is {_recorded_seconds(directory):.1f} s long)")
    except (OSError, av.FFmpegError) as exc:
        fail(f"{job} failed: {exc}")


def _describe(path: Path) -> str:
    import av

    try:
        with av.open(str(path)) as container:
            seconds = (container.duration or 0) / av.time_base
    except (OSError, av.FFmpegError):
        seconds = 0.0
    return f"{seconds:.1f} s, {path.stat().st_size / 1024:.0f} KiB"


def export(
    space_id: str = typer.Argument(..., help="Space id."),
    output: Path = typer.Argument(..., help="File to write, e.g. space.m4a (AAC in MP4)."),
    data: Path = typer.Option(None, "--data", help="Data folder [env TOWNHALL_DATA; ./data]."),
) -> None:
    """Write a space's whole recording as one playable .m4a (no re-encoding)."""
    from ..packaging import export_recording

    directory = _check_source(data, space_id)
    target = _check_output(output)
    _write("export", directory, lambda: export_recording(directory, target))
    out.print(f"wrote {target} ({_describe(target)})")


def clip(
    space_id: str = typer.Argument(..., help="Space id."),
    output: Path = typer.Argument(..., help="File to write, e.g. clip.m4a."),
    seconds: float = typer.Option(
        None, "--seconds", help="The last N seconds of the recording [30]."
    ),
    start: float = typer.Option(None, "--start", help="From S seconds into the recording."),
    end: float = typer.Option(None, "--end", help="To E seconds into the recording [its end]."),
    data: Path = typer.Option(None, "--data", help="Data folder [env TOWNHALL_DATA; ./data]."),
) -> None:
    """Cut a clip (at most 5 minutes): the last --seconds, or --start/--end."""
    from ..packaging import make_clip

    ranged = start is not None or end is not None
    if ranged and seconds is not None:
        fail("give either --seconds or --start/--end, not both")
    if ranged:
        lo = start if start is not None else 0.0
        if lo < 0 or (end is not None and end <= lo):
            fail("need 0 <= --start < --end")
        if end is not None and end - lo > MAX_CLIP_SECONDS:
            fail(f"a clip is at most {MAX_CLIP_SECONDS:.0f} s")
    else:
        seconds = 30.0 if seconds is None else seconds
        if not 0 < seconds <= MAX_CLIP_SECONDS:
            fail(f"--seconds must be in (0, {MAX_CLIP_SECONDS:.0f}]")
    directory = _check_source(data, space_id)
    target = _check_output(output)
    if ranged:
        lo = start if start is not None else 0.0
        hi = end if end is not None else None
        if hi is None:  # to the end, capped at the clip limit
            hi = lo + MAX_CLIP_SECONDS
        _write(
            "clip", directory, lambda: make_clip(directory, target, seconds=None, start=lo, end=hi)
        )
    else:
        _write("clip", directory, lambda: make_clip(directory, target, seconds=seconds))
    out.print(f"wrote {target} ({_describe(target)})")
