"""Pure fragmented-MP4 writer for one AAC audio track, plus a tiny box parser.

The init section is ``ftyp`` + ``moov`` (with ``mvex/trex``); every fragment (one LL-HLS part)
is ``moof`` (``mfhd``, ``traf``: ``tfhd`` default-base-is-moof, ``tfdt``, ``trun``) + ``mdat``.
A segment is the concatenation of its parts' fragments. Timescale = sample rate.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from townhall.packaging.config import AAC_FRAME_SAMPLES

TRACK_ID = 1
_MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
_CONTAINERS = frozenset(
    {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"dinf", b"edts"}
)


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def _descriptor(tag: int, payload: bytes) -> bytes:
    size = len(payload)
    if size >= 1 << 28:
        raise ValueError("descriptor too large")
    length = bytes(
        [0x80 | ((size >> 21) & 0x7F), 0x80 | ((size >> 14) & 0x7F), 0x80 | ((size >> 7) & 0x7F)]
    ) + bytes([size & 0x7F])
    return bytes([tag]) + length + payload


def _esds(asc: bytes, bitrate: int) -> bytes:
    dec_specific = _descriptor(0x05, asc)
    # objectTypeIndication 0x40 = MPEG-4 Audio; streamType 0x05 (audio) << 2 | reserved bit.
    dec_config = _descriptor(
        0x04, struct.pack(">BBBHII", 0x40, 0x15, 0, 0, bitrate, bitrate) + dec_specific
    )
    sl_config = _descriptor(0x06, b"\x02")
    es = _descriptor(0x03, struct.pack(">HB", TRACK_ID, 0) + dec_config + sl_config)
    return _full_box(b"esds", 0, 0, es)


def init_segment(asc: bytes, sample_rate: int, channels: int = 1, bitrate: int = 64000) -> bytes:
    """Build the init section (EXT-X-MAP) for an AAC track described by ``asc``."""
    if not 0 < sample_rate < 65536:
        raise ValueError("sample_rate must fit the 16.16 field of the sample entry")
    ftyp = _box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6", b"mp41", b"dash")
    mvhd = _full_box(
        b"mvhd", 0, 0,
        struct.pack(">IIII", 0, 0, 1000, 0),
        struct.pack(">IH", 0x00010000, 0x0100), b"\x00" * 10, _MATRIX, b"\x00" * 24,
        struct.pack(">I", TRACK_ID + 1),
    )  # fmt: skip
    tkhd = _full_box(
        b"tkhd", 0, 0x000003,
        struct.pack(">IIII", 0, 0, TRACK_ID, 0), struct.pack(">I", 0), b"\x00" * 8,
        struct.pack(">hhhH", 0, 0, 0x0100, 0), _MATRIX, struct.pack(">II", 0, 0),
    )  # fmt: skip
    mdhd = _full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, sample_rate, 0, 0x55C4, 0))
    hdlr = _full_box(
        b"hdlr", 0, 0, struct.pack(">I", 0), b"soun", b"\x00" * 12, b"SoundHandler\x00"
    )
    mp4a = _box(
        b"mp4a",
        b"\x00" * 6, struct.pack(">H", 1), b"\x00" * 8,
        struct.pack(">HHHHI", channels, 16, 0, 0, sample_rate << 16),
        _esds(asc, bitrate),
    )  # fmt: skip
    stbl = _box(
        b"stbl",
        _full_box(b"stsd", 0, 0, struct.pack(">I", 1), mp4a),
        _full_box(b"stts", 0, 0, struct.pack(">I", 0)),
        _full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
        _full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        _full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    dinf = _box(b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1)))
    minf = _box(b"minf", _full_box(b"smhd", 0, 0, struct.pack(">hH", 0, 0)), dinf, stbl)
    trak = _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf))
    trex = _full_box(b"trex", 0, 0, struct.pack(">IIIII", TRACK_ID, 1, AAC_FRAME_SAMPLES, 0, 0))
    moov = _box(b"moov", mvhd, trak, _box(b"mvex", trex))
    return ftyp + moov


def fragment(
    sequence: int,
    base_decode_time: int,
    frames: list[bytes],
    frame_duration: int = AAC_FRAME_SAMPLES,
) -> bytes:
    """Build one ``moof`` + ``mdat`` holding ``frames`` (all sync samples) starting at
    ``base_decode_time`` (in timescale units). ``sequence`` is the mfhd sequence number (>= 1)."""
    if not frames:
        raise ValueError("a fragment needs at least one frame")
    if sequence < 1:
        raise ValueError("mfhd sequence numbers start at 1")
    count = len(frames)
    # tfhd: default-base-is-moof (0x020000), no other defaults.
    tfhd = _full_box(b"tfhd", 0, 0x020000, struct.pack(">I", TRACK_ID))
    tfdt = _full_box(b"tfdt", 1, 0, struct.pack(">Q", base_decode_time))
    # trun: data-offset (0x1) + sample-duration (0x100) + sample-size (0x200).
    trun_len = 8 + 4 + 8 + count * 8
    mfhd = _full_box(b"mfhd", 0, 0, struct.pack(">I", sequence))
    moof_len = 8 + len(mfhd) + 8 + len(tfhd) + len(tfdt) + trun_len
    data_offset = moof_len + 8
    entries = b"".join(struct.pack(">II", frame_duration, len(f)) for f in frames)
    trun = _full_box(b"trun", 0, 0x000301, struct.pack(">Ii", count, data_offset), entries)
    moof = _box(b"moof", mfhd, _box(b"traf", tfhd, tfdt, trun))
    if len(moof) != moof_len:  # pragma: no cover - guards the offset arithmetic
        raise AssertionError("moof size mismatch")
    return moof + _box(b"mdat", *frames)


@dataclass
class Box:
    """One parsed ISO-BMFF box."""

    kind: str
    """Four-character type."""
    offset: int
    """Offset of the box header in the parsed buffer."""
    size: int
    """Total size including the header."""
    payload: bytes
    """Body after the 8-byte header."""
    children: list[Box] = field(default_factory=list)
    """Parsed children for known container boxes."""

    def find(self, path: str) -> Box | None:
        """First descendant along a slash-separated path of box types, e.g. ``traf/tfdt``."""
        return find_box(self.children, path)


def parse_boxes(data: bytes, base: int = 0) -> list[Box]:
    """Parse a sequence of boxes; raises ValueError on a truncated or malformed buffer."""
    boxes: list[Box] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 8:
            raise ValueError(f"truncated box header at {base + pos}")
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size < 8 or pos + size > len(data):
            raise ValueError(f"bad box size {size} for {kind!r} at {base + pos}")
        payload = data[pos + 8 : pos + size]
        box = Box(kind.decode("latin-1"), base + pos, size, payload)
        if kind in _CONTAINERS:
            box.children = parse_boxes(payload, base + pos + 8)
        boxes.append(box)
        pos += size
    return boxes


def find_box(boxes: Iterable[Box], path: str) -> Box | None:
    """First box along a slash-separated path (``moov/trak/mdia/mdhd``)."""
    head, _, rest = path.partition("/")
    for box in boxes:
        if box.kind == head:
            return box if not rest else find_box(box.children, rest)
    return None


def iter_boxes(boxes: Iterable[Box], kind: str) -> Iterator[Box]:
    """Top-level boxes of one type."""
    return (b for b in boxes if b.kind == kind)


@dataclass(frozen=True)
class FragmentInfo:
    """Timing of one parsed moof/mdat pair."""

    sequence: int
    """mfhd sequence number."""
    base_decode_time: int
    """tfdt baseMediaDecodeTime (timescale units)."""
    sample_count: int
    """Samples in the trun."""
    duration: int
    """Sum of sample durations (timescale units)."""


def fragment_infos(data: bytes) -> list[FragmentInfo]:
    """Timing of every fragment in a media segment/part buffer (validates the box structure)."""
    out: list[FragmentInfo] = []
    boxes = parse_boxes(data)
    for i, box in enumerate(boxes):
        if box.kind != "moof":
            continue
        if i + 1 >= len(boxes) or boxes[i + 1].kind != "mdat":
            raise ValueError("moof without mdat")
        mfhd, tfdt, trun = box.find("mfhd"), box.find("traf/tfdt"), box.find("traf/trun")
        if mfhd is None or tfdt is None or trun is None:
            raise ValueError("incomplete moof")
        (seq,) = struct.unpack_from(">I", mfhd.payload, 4)
        version = tfdt.payload[0]
        (bmdt,) = struct.unpack_from(">Q" if version == 1 else ">I", tfdt.payload, 4)
        flags = int.from_bytes(trun.payload[1:4], "big")
        (count,) = struct.unpack_from(">I", trun.payload, 4)
        pos = 8 + (4 if flags & 0x1 else 0) + (4 if flags & 0x4 else 0)
        per_sample = sum(4 for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit)
        total = 0
        for n in range(count):
            if flags & 0x100:
                (dur,) = struct.unpack_from(">I", trun.payload, pos + n * per_sample)
            else:
                dur = AAC_FRAME_SAMPLES
            total += dur
        out.append(FragmentInfo(seq, bmdt, count, total))
    return out
