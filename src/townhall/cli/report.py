"""``townhall report SPACE --out report.html``: an incident report an operator can mail.

Fetches ``/ops/watch?space=SPACE`` (operator key) and the space's state document and writes
one self-contained HTML file: the verdict now, an incident timeline plot drawn as inline SVG
(verdict bands, listeners, joins admitted/queued/refused, origin load), the incidents with
their evidence, and the suggested mitigations. No scripts, no external resources.
"""

from __future__ import annotations

import html
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from .common import KeyOpt, ServerOpt, call, console

COLOURS = {
    "normal": "#e8f3e8",
    "flash_crowd": "#cfe3ff",
    "attack": "#ffc9c4",
    "both": "#e6c9ff",
}
STRONG = {"normal": "#4c9a4c", "flash_crowd": "#2f6fd6", "attack": "#d23a2a", "both": "#8a3fd1"}
NAMES = {"normal": "normal", "flash_crowd": "flash crowd", "attack": "attack", "both": "both"}
WIDTH = 960
LEFT = 70
RIGHT = 20
PANEL = 110


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def timeline_svg(rows: list[dict[str, Any]], window: float) -> str:
    """The incident timeline: four panels sharing one time axis."""
    if not rows:
        return "<p>No windows judged yet.</p>"
    start = float(rows[0]["start"])
    end = float(rows[-1]["start"]) + window
    span = max(end - start, window)
    plot_w = WIDTH - LEFT - RIGHT

    def x(t: float) -> float:
        return LEFT + (t - start) / span * plot_w

    bar_w = max(1.0, plot_w * window / span)
    panels = [
        ("Verdict", None),
        ("Listeners", [float(r["listeners"]) for r in rows]),
        ("Joins / window", [float(r["joins"]["attempts"]) for r in rows]),
        ("Origin req/s", [float(r["origin_rps"]) for r in rows]),
    ]
    height = 20 + len(panels) * (PANEL + 20) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="system-ui,sans-serif" font-size="11" '
        'role="img" aria-label="incident timeline">'
    ]
    for p, (title, values) in enumerate(panels):
        top = 20 + p * (PANEL + 20)
        bottom = top + PANEL
        # verdict bands behind every panel
        for r in rows:
            label = str(r["label"])
            opacity = "1" if values is None else "0.45"
            parts.append(
                f'<rect x="{x(float(r["start"])):.1f}" y="{top}" width="{bar_w:.1f}" '
                f'height="{PANEL}" fill="{COLOURS.get(label, "#eee")}" opacity="{opacity}">'
                f"<title>{_esc(_clock(float(r['start'])))} {_esc(NAMES.get(label, label))}"
                f"{_esc(' ' + ', '.join(r['attacks']) if r['attacks'] else '')} "
                f"({float(r['confidence']) * 100:.0f} %)</title></rect>"
            )
        parts.append(
            f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" '
            'stroke="#999"/>'
        )
        parts.append(f'<text x="{LEFT}" y="{top - 5}" font-weight="600">{_esc(title)}</text>')
        if values is None:
            for r in rows:
                if r["attacks"]:
                    parts.append(
                        f'<text x="{x(float(r["start"])) + 1:.1f}" y="{top + PANEL - 4}" '
                        f'font-size="9" fill="#700">{_esc(r["attacks"][0][:4])}</text>'
                    )
            continue
        top_value = _nice_max(max(values))
        parts.append(
            f'<text x="{LEFT - 6}" y="{top + 10}" text-anchor="end">{top_value:,.0f}</text>'
            f'<text x="{LEFT - 6}" y="{bottom}" text-anchor="end">0</text>'
        )

        def y(v: float, top: float = top, top_value: float = top_value) -> float:
            return top + PANEL - v / top_value * PANEL

        if title.startswith("Joins"):
            for r in rows:
                base = 0.0
                for key, colour in (
                    ("admitted", "#3b8f3b"),
                    ("queued", "#e0a100"),
                    ("refused", "#c0392b"),
                ):
                    value = float(r["joins"][key])
                    if value <= 0:
                        continue
                    h = y(base) - y(base + value)
                    parts.append(
                        f'<rect x="{x(float(r["start"])):.1f}" y="{y(base + value):.1f}" '
                        f'width="{max(bar_w - 1, 0.8):.1f}" height="{h:.1f}" '
                        f'fill="{colour}"><title>{key} {value:,.0f}</title></rect>'
                    )
                    base += value
        else:
            colour = "#1f4e9c" if title == "Listeners" else "#7a3d00"
            points = " ".join(
                f"{x(float(r['start']) + window / 2):.1f},{y(v):.1f}"
                for r, v in zip(rows, values, strict=True)
            )
            parts.append(
                f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.6"/>'
            )
    axis = 20 + len(panels) * (PANEL + 20) - 5
    ticks = 6
    for i in range(ticks + 1):
        t = start + span * i / ticks
        anchor = "start" if i == 0 else "end" if i == ticks else "middle"
        parts.append(
            f'<text x="{x(t):.1f}" y="{axis + 12}" text-anchor="{anchor}">{_clock(t)}</text>'
        )
    legend_y = axis + 30
    lx = LEFT
    for label, colour in COLOURS.items():
        parts.append(
            f'<rect x="{lx}" y="{legend_y - 9}" width="12" height="10" fill="{colour}" '
            f'stroke="{STRONG[label]}"/><text x="{lx + 16}" y="{legend_y}">{NAMES[label]}</text>'
        )
        lx += 110
    for key, colour in (("admitted", "#3b8f3b"), ("queued", "#e0a100"), ("refused", "#c0392b")):
        parts.append(
            f'<rect x="{lx}" y="{legend_y - 9}" width="12" height="10" fill="{colour}"/>'
            f'<text x="{lx + 16}" y="{legend_y}">joins {key}</text>'
        )
        lx += 120
    parts.append("</svg>")
    return "".join(parts)


def incidents(rows: list[dict[str, Any]], window: float) -> list[dict[str, Any]]:
    """Consecutive windows with the same non-normal verdict, merged: start, end, label,
    attacks, peak confidence and the evidence of the most confident window."""
    out: list[dict[str, Any]] = []
    for r in rows:
        if r["label"] == "normal":
            continue
        key = (r["label"], tuple(r["attacks"]))
        last = out[-1] if out else None
        if last and last["key"] == key and float(r["start"]) <= last["end"] + 1e-6:
            last["end"] = float(r["start"]) + window
            last["windows"] += 1
            if float(r["confidence"]) > last["confidence"]:
                last["confidence"] = float(r["confidence"])
                last["evidence"] = list(r["evidence"])
            continue
        out.append(
            {
                "key": key,
                "label": r["label"],
                "attacks": list(r["attacks"]),
                "start": float(r["start"]),
                "end": float(r["start"]) + window,
                "windows": 1,
                "confidence": float(r["confidence"]),
                "evidence": list(r["evidence"]),
            }
        )
    return out


def render_report(
    space: str, watch: dict[str, Any], state: dict[str, Any] | None, generated_at: float
) -> str:
    """The whole HTML document (pure; the command only fetches and writes)."""
    rows: list[dict[str, Any]] = list(watch.get("timeline") or [])
    window = float(watch.get("window_seconds") or 10.0)
    verdict = watch.get("verdict") or {}
    title = (state or {}).get("title") or space
    listeners = (state or {}).get("listeners") or {}
    body: list[str] = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>townhall report: {_esc(title)}</title>",
        "<style>body{font:14px/1.5 system-ui,sans-serif;max-width:62rem;margin:2rem auto;"
        "padding:0 1rem;color:#222}h1{margin-bottom:0}.muted{color:#666}"
        ".tag{display:inline-block;padding:.1rem .5rem;border-radius:4px;font-weight:600}"
        "table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;"
        "text-align:left;vertical-align:top}code{font-family:ui-monospace,monospace}</style>",
        "</head><body>",
        f"<h1>Incident report: {_esc(title)}</h1>",
        f"<p class='muted'>space <code>{_esc(space)}</code>"
        + (f", status {_esc(state.get('status'))}" if state else "")
        + f"; generated {_esc(datetime.fromtimestamp(generated_at, UTC).isoformat())}</p>",
    ]
    if listeners:
        body.append(
            f"<p>Listeners now {_esc(listeners.get('current'))}, peak "
            f"{_esc(listeners.get('peak'))}, total {_esc(listeners.get('total'))}.</p>"
        )
    label = str(verdict.get("label", "normal"))
    body.append(
        f"<h2>Now</h2><p><span class='tag' style='background:{COLOURS.get(label, '#eee')}'>"
        f"{_esc(NAMES.get(label, label))}</span> {_esc(watch.get('headline', ''))}</p>"
    )
    if verdict.get("evidence"):
        body.append("<ul>" + "".join(f"<li>{_esc(e)}</li>" for e in verdict["evidence"]) + "</ul>")
    body.append("<h2>Timeline</h2>")
    if rows:
        body.append(
            f"<p class='muted'>{len(rows)} windows of {window:g} s, "
            f"{_esc(_clock(float(rows[0]['start'])))}–"
            f"{_esc(_clock(float(rows[-1]['start']) + window))} UTC.</p>"
        )
    body.append(timeline_svg(rows, window))
    found = incidents(rows, window)
    body.append("<h2>Incidents</h2>")
    if not found:
        body.append("<p>No flash crowd or attack in the timeline.</p>")
    for inc in found:
        kinds = f" ({', '.join(inc['attacks'])})" if inc["attacks"] else ""
        body.append(
            f"<h3>{_esc(_clock(inc['start']))}–{_esc(_clock(inc['end']))} UTC: "
            f"{_esc(NAMES.get(inc['label'], inc['label']))}{_esc(kinds)}, "
            f"{inc['windows']} windows, up to {inc['confidence'] * 100:.0f} % sure</h3>"
            "<ul>" + "".join(f"<li>{_esc(e)}</li>" for e in inc["evidence"]) + "</ul>"
        )
    mitigation = watch.get("mitigations") or {}
    body.append("<h2>Mitigations</h2>")
    if not mitigation.get("active"):
        body.append("<p>None needed now.</p>")
    else:
        body.append("<ul>" + "".join(f"<li>{_esc(a)}</li>" for a in mitigation["advice"]) + "</ul>")
        for key, heading, cols in (
            ("block_sources", "Sources", ("source", "requests", "reasons")),
            ("block_networks", "Networks", ("network", "requests", "suspect_sources")),
            ("revoke_tickets", "Tickets", ("listener", "requests_per_second")),
            ("connection_holders", "Connection holders", ("source", "open_connections")),
        ):
            items = mitigation.get(key) or []
            if not items:
                continue
            body.append(f"<h3>{heading}</h3><table><tr>")
            body.append("".join(f"<th>{_esc(c)}</th>" for c in cols) + "</tr>")
            for item in items:
                cells = [
                    ", ".join(item[c]) if isinstance(item.get(c), list) else item.get(c)
                    for c in cols
                ]
                body.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells) + "</tr>")
            body.append("</table>")
    baseline = watch.get("baseline") or {}
    body.append(
        "<h2>Baseline</h2><p class='muted'>"
        f"learned from {_esc(baseline.get('windows', 0))} normal windows: "
        f"{float(baseline.get('join_rate', 0)):.2f} joins/s, "
        f"{float(baseline.get('request_rate', 0)):.1f} requests/s, origin "
        f"{float(baseline.get('origin_rps', 0)):.1f} req/s.</p>"
    )
    body.append("</body></html>")
    return "\n".join(body)


def report(
    space: str = typer.Argument(..., help="Space id."),
    out: Path = typer.Option(Path("report.html"), "--out", help="HTML file to write."),
    server: str = ServerOpt,
    key: str = KeyOpt,
) -> None:
    """Write an incident report (timeline plot, verdicts, evidence, mitigations) for SPACE."""
    watch = call("GET", server, f"/ops/watch?space={space}", key=key)
    state = call("GET", server, f"/api/spaces/{space}/state", key=key)
    document = render_report(space, watch, state, time.time())
    out.write_text(document, encoding="utf-8")
    console.print(f"wrote {out} ({len(document):,} bytes)")
