"""Varnish configuration (VCL 4.1) for an LL-HLS edge: pure, settings in, text out.

What the VCL does, in request order:

* ``/hls/…`` needs a ticket in the path (``/hls/{space}/t/{ticket}/{name}``): only the five
  media names pass (404 otherwise); the HS256 signature is checked with ``vmod-digest`` and
  the embedded keys (chosen by ``kid``), then ``iss``, ``exp``, ``sid`` and the ``listen`` grant
  (refusals are small problem+json answers; the origin sees nothing).
* The query string is normalised: ``live.m3u8`` keeps ``_HLS_msn``/``_HLS_part`` (leading
  zeros dropped, fixed order), everything else loses it; names with leading zeros are refused.
* The cache key is ``/hls/{space}/{name}[?_HLS_msn=…&_HLS_part=…]``: the ticket is not in it,
  so every listener shares one object. The first listener's URL (with its ticket) is what
  reaches the origin; the others wait on Varnish's waiting list and are released together as
  soon as the origin's headers arrive (one origin fetch per object, held requests included).
* Origin answers are cached as the origin says (immutable media, 1 s live playlist, 6 s
  blocking reload); 404/400/5xx for ``error_ttl`` (the herd waiting on them is answered
  together, nothing is poisoned for long); 401/403/429 are about one client and never shared
  (no hit-for-miss object lingers: ttl 0).
* ``/api/spaces/{id}/state`` is cached as the origin says (1 s), query dropped; every other
  path is passed through uncached.
* For the edge's log reader (:mod:`townhall.edge.logship`: listener counts and the watch),
  every ticketed media request logs ``th_nm:{name}`` and ``th_tp:{verified ticket payload}``
  with ``std.log``; every refusal logs ``th_out:{code}``.
* Mitigations (:mod:`townhall.edge.acl`): addresses in ``acl townhall_blocked`` get a 403
  ``blocked`` before anything else; tickets whose ``sub`` or ``jti`` is revoked get a 401
  ``revoked_token``. ``edge run --ops-key`` regenerates both from the origin's lists.
"""

from __future__ import annotations

import json

from ..auth.links import EXP_RE, JTI_RE, KID_RE, MAC_RE, SUB64_RE, derive_link_key
from .acl import render_blocked_acl, render_revoked_check, render_revoked_link_check
from .settings import EdgeKey, EdgeSettings

NAME_RE = (
    r"^(live\.m3u8|replay\.m3u8|std\.m3u8|init\.mp4|(seg|std)(0|[1-9][0-9]{0,9})\.m4s"
    r"|part(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,2})\.m4s)$"
)
SPACE_RE = r"[A-Za-z0-9_-]{1,64}"
TICKET_RE = r"[A-Za-z0-9_-]{1,400}\.[A-Za-z0-9_-]{1,1600}\.[A-Za-z0-9_-]{43}"

INTERNAL_HEADERS = (
    "X-Th-Space",
    "X-Th-Name",
    "X-Th-Ticket",
    "X-Th-Jh",
    "X-Th-Kid",
    "X-Th-Mac",
    "X-Th-Claims",
    "X-Th-Payload",
    "X-Th-Msn",
    "X-Th-Part",
    "X-Th-Query",
    "X-Th-Key",
    "X-Th-Link",
    "X-Th-Lk",
    "X-Th-Exp",
    "X-Th-Sub",
    "X-Th-Jti",
)
"""Scratch headers of the VCL: removed from client requests and from origin requests."""

REFUSALS: dict[str, tuple[int, str, str]] = {
    "ticket_required": (401, "Unauthorized", "a ticket is required: join the space to get one"),
    "malformed_token": (401, "Unauthorized", "token is not a well-formed JWT"),
    "unknown_key": (401, "Unauthorized", "token was signed with an unknown or retired key"),
    "bad_signature": (401, "Unauthorized", "token signature does not verify"),
    "bad_algorithm": (401, "Unauthorized", "token algorithm must be HS256"),
    "expired_token": (401, "Unauthorized", "token has expired"),
    "wrong_space": (403, "Forbidden", "token was issued for another space"),
    "missing_grant": (403, "Forbidden", "token does not carry the 'listen' grant"),
    "no_such_media": (404, "Not Found", "no such media name"),
    "bad_hls_request": (400, "Bad Request", "bad blocking reload request"),
    "method_not_allowed": (405, "Method Not Allowed", "media is read with GET or HEAD"),
    "blocked": (403, "Forbidden", "your address is blocked"),
    "revoked_token": (401, "Unauthorized", "token was revoked: join again"),
}
"""Edge refusals: code → (status, title, detail); bodies match the origin's problem documents."""


def render_vcl(
    settings: EdgeSettings,
    blocked: tuple[str, ...] = (),
    revoked: tuple[str, ...] = (),
) -> str:
    """The complete VCL for ``settings`` (embeds the ticket keys: keep the file private);
    ``blocked`` CIDRs are refused with 403, tickets whose ``sub``/``jti`` is in ``revoked``
    with 401."""
    text = _TEMPLATE
    for marker, value in (
        ("@@BLOCKED_ACL@@", render_blocked_acl(blocked)),
        ("@@REVOKED@@", render_revoked_check(revoked)),
        ("@@REVOKED_LINKS@@", render_revoked_link_check(revoked)),
        ("@@LINK_KEYS@@", _link_keys(settings.keys)),
        ("@@LINK_RE@@", f"{KID_RE}/{EXP_RE}/{SUB64_RE}/{JTI_RE}/{MAC_RE}"),
        ("@@NAME@@", _vcl_string(settings.name)),
        ("@@HOST@@", _vcl_string(settings.origin_host)),
        ("@@PORT@@", str(settings.origin_port)),
        ("@@HOLD@@", f"{settings.hold_timeout:.3f}s"),
        ("@@ERROR_TTL@@", f"{settings.error_ttl:.3f}s"),
        ("@@NAME_RE@@", NAME_RE),
        ("@@SPACE_RE@@", SPACE_RE),
        ("@@TICKET_RE@@", TICKET_RE),
        ("@@UNSET_REQ@@", _unsets("req", 4)),
        ("@@UNSET_BEREQ@@", _unsets("bereq", 4)),
        ("@@KEYS@@", _key_selection(settings.keys, settings.skipped_kids)),
        ("@@SYNTH@@", _synth_bodies()),
        (
            "@@BACKEND_ERROR_BODY@@",
            _long_string(
                problem_body(
                    "origin_unreachable",
                    503,
                    "Service Unavailable",
                    "the edge cannot reach the origin",
                )
            ),
        ),
    ):
        text = text.replace(marker, value)
    return text


def _vcl_string(value: str) -> str:
    if '"' in value or "\n" in value or "\r" in value or "}" in value:
        raise ValueError(f"{value!r} cannot be written into VCL")
    return value


def _long_string(content: str) -> str:
    """A VCL long string ``{"…"}``; its content may hold anything but ``"}``."""
    if '"}' in content:
        raise ValueError("long string content may not contain '\"}'")
    return '{"' + content + '"}'


def _unsets(scope: str, indent: int) -> str:
    pad = " " * indent
    return "\n".join(f"{pad}unset {scope}.http.{name};" for name in INTERNAL_HEADERS)


def _key_selection(keys: tuple[EdgeKey, ...], skipped: tuple[str, ...]) -> str:
    lines: list[str] = []
    for kid in skipped:
        lines.append(f"    # key {kid}: holds a zero byte, cannot be checked here (refused)")
    branch = "if"
    for key in keys:
        secret = key.edge_secret
        if secret is None:
            continue
        lines.append(f'    {branch} (req.http.X-Th-Kid == "{_vcl_string(key.kid)}") {{')
        lines.append("        set req.http.X-Th-Mac = digest.hmac_sha256(")
        lines.append(f'            blob.transcode(decoding=HEX, encoded="{secret.hex()}"),')
        lines.append('            regsub(req.http.X-Th-Ticket, {"\\.[^.]*$"}, ""));')
        lines.append("    }")
        branch = "elsif"
    if not lines or branch == "if":
        lines.append("    # no key can be checked at this edge: every ticket is refused")
        return "\n".join(lines)
    lines[-1] = "    } else {"
    lines.append("        unset req.http.X-Th-Mac;")
    lines.append("    }")
    return "\n".join(lines)


def _link_keys(keys: tuple[EdgeKey, ...]) -> str:
    """``th_link_key``: the derived listener-link key of each ticket key, chosen by kid."""
    lines: list[str] = []
    for i, key in enumerate(keys):
        branch = "if" if i == 0 else "} elsif"
        lines.append(f'    {branch} (req.http.X-Th-Kid == "{_vcl_string(key.kid)}") {{')
        lines.append(f'        set req.http.X-Th-Lk = "{derive_link_key(key.secret)}";')
    if not lines:
        return "    # no key: every link is refused"
    lines.append("    }")
    return "\n".join(lines)


def problem_body(code: str, status: int, title: str, detail: str) -> str:
    """A refusal's problem+json document (both edge kinds), like the origin's; ``status``
    last so it never ends in '"}'."""
    return json.dumps(
        {
            "type": f"https://townhall.dev/problems/{code.replace('_', '-')}",
            "title": title,
            "detail": detail,
            "code": code,
            "status": status,
        },
        separators=(",", ":"),
    )


def _synth_bodies() -> str:
    blocks: list[str] = []
    for code, (status, title, detail) in REFUSALS.items():
        body = problem_body(code, status, title, f"{detail} (refused at the edge)")
        blocks.append(
            f'    if (resp.reason == "{code}") {{\n'
            f'        set resp.http.Content-Type = "application/problem+json";\n'
            f'        set resp.http.Cache-Control = "no-store";\n'
            f"        set resp.body = {_long_string(body)};\n"
            f'        set resp.reason = "{title}";\n'
            f"        return (deliver);\n"
            f"    }}"
        )
    return "\n".join(blocks)


_TEMPLATE = r"""vcl 4.1;
# townhall LL-HLS edge "@@NAME@@": generated by `townhall edge-config`; regenerate, do not edit.
# It embeds the ticket signing keys: keep this file private (mode 0600).

import std;
import blob;
import digest;

backend origin {
    .host = "@@HOST@@";
    .port = "@@PORT@@";
    .connect_timeout = 2s;
    .first_byte_timeout = @@HOLD@@;
    .between_bytes_timeout = 10s;
}

acl th_local {
    "127.0.0.1";
    "::1";
}

@@BLOCKED_ACL@@

sub vcl_recv {
@@UNSET_REQ@@
    if (client.ip ~ townhall_blocked) {
        return (synth(403, "blocked"));
    }
    if (req.url == "/_edge/probe") {
        # `edge run` checks that its log reader is attached before it reports ready.
        if (client.ip !~ th_local) {
            return (synth(404, "no_such_media"));
        }
        return (synth(204, "probe"));
    }
    if (req.url ~ "^/hls/") {
        call th_media;
    }
    if (req.url ~ "^/api/spaces/@@SPACE_RE@@/state(\?.*)?$"
        && (req.method == "GET" || req.method == "HEAD")) {
        set req.url = regsub(req.url, "\?.*$", "");
        set req.http.X-Th-Key = req.url;
        unset req.http.Cookie;
        unset req.http.Authorization;
        return (hash);
    }
    # Other API calls and pages are not cached here (they belong to the API nodes).
    return (pass);
}

sub th_media {
    if (req.method != "GET" && req.method != "HEAD") {
        return (synth(405, "method_not_allowed"));
    }
    if (req.url ~ "^/hls/@@SPACE_RE@@/l/") {
        call th_check_link;
    } else {
        call th_ticket_media;
    }
    call th_normalise;
    # For the edge's one log reader (URLs are truncated in the log): the media name and the
    # verified ticket payload (listener counts and the watch).
    std.log("th_nm:" + req.http.X-Th-Name);
    std.log("th_tp:" + req.http.X-Th-Payload);
    unset req.http.Cookie;
    unset req.http.Authorization;
    return (hash);
}

sub th_ticket_media {
    if (req.url !~ "^/hls/@@SPACE_RE@@/t/") {
        # Ticketless paths are refused: the edge cannot tell a public space from a ticketed one.
        return (synth(401, "ticket_required"));
    }
    if (req.url !~ "^/hls/@@SPACE_RE@@/t/[^/?]+/[^/?]+(\?.*)?$") {
        return (synth(404, "no_such_media"));
    }
    set req.http.X-Th-Space = regsub(req.url, "^/hls/([^/]+)/.*$", "\1");
    set req.http.X-Th-Name = regsub(req.url, "^/hls/[^/]+/t/[^/]+/([^/?]+).*$", "\1");
    if (req.http.X-Th-Name !~ "@@NAME_RE@@") {
        return (synth(404, "no_such_media"));
    }
    set req.http.X-Th-Ticket = regsub(req.url, "^/hls/[^/]+/t/([^/]+)/.*$", "\1");
    if (req.http.X-Th-Ticket !~ "^@@TICKET_RE@@$") {
        return (synth(401, "malformed_token"));
    }
    call th_check_ticket;
}

sub th_check_link {
    # A listener link (townhall.auth.links): the same admission as a ticket, as path
    # segments with an MD5 MAC under the link key derived from the ticket key.
    if (req.url !~ "^/hls/@@SPACE_RE@@/l/@@LINK_RE@@/[^/?]+(\?.*)?$") {
        return (synth(401, "malformed_token"));
    }
    set req.http.X-Th-Space = regsub(req.url, "^/hls/([^/]+)/.*$", "\1");
    set req.http.X-Th-Name = regsub(req.url, "^/hls/[^/]+/l/(?:[^/]+/){5}([^/?]+).*$", "\1");
    if (req.http.X-Th-Name !~ "@@NAME_RE@@") {
        return (synth(404, "no_such_media"));
    }
    set req.http.X-Th-Link = regsub(req.url, "^/hls/[^/]+/l/((?:[^/]+/){4}[^/]+)/.*$", "\1");
    set req.http.X-Th-Kid = regsub(req.http.X-Th-Link, "^([^/]+)/.*$", "\1");
    set req.http.X-Th-Exp = regsub(req.http.X-Th-Link, "^[^/]+/([^/]+)/.*$", "\1");
    set req.http.X-Th-Sub = regsub(req.http.X-Th-Link, "^(?:[^/]+/){2}([^/]+)/.*$", "\1");
    set req.http.X-Th-Jti = regsub(req.http.X-Th-Link, "^(?:[^/]+/){3}([^/]+)/.*$", "\1");
    set req.http.X-Th-Mac = regsub(req.http.X-Th-Link, "^(?:[^/]+/){4}([^/]+)$", "\1");
    call th_link_key;
    if (!req.http.X-Th-Lk) {
        return (synth(401, "unknown_key"));
    }
    # Compare digests of both sides, as for tickets.
    if (digest.hash_sha256(digest.base64url_nopad_hex(digest.hash_md5(
            req.http.X-Th-Exp + "/" + req.http.X-Th-Space + "/" + req.http.X-Th-Sub + "/"
            + req.http.X-Th-Jti + "/" + req.http.X-Th-Kid + " " + req.http.X-Th-Lk)))
        != digest.hash_sha256(req.http.X-Th-Mac)) {
        return (synth(401, "bad_signature"));
    }
    if (std.integer(req.http.X-Th-Exp, 0) <= std.integer(time=now)) {
        return (synth(401, "expired_token"));
    }
@@REVOKED_LINKS@@
    # What the log reader counts: the listener id in its link encoding.
    set req.http.X-Th-Payload = "l:" + req.http.X-Th-Sub;
}

sub th_link_key {
@@LINK_KEYS@@
}

sub th_check_ticket {
    set req.http.X-Th-Jh = digest.base64url_nopad_decode(
        regsub(req.http.X-Th-Ticket, "^([^.]+)\..*$", "\1"));
    if (req.http.X-Th-Jh !~ {"[{,]"kid":"[A-Za-z0-9_.-]{1,64}"[,}]"}) {
        return (synth(401, "unknown_key"));
    }
    set req.http.X-Th-Kid = regsub(req.http.X-Th-Jh,
        {"^.*[{,]"kid":"([A-Za-z0-9_.-]{1,64})"[,}].*$"}, "\1");
    call th_mac;
    if (!req.http.X-Th-Mac) {
        return (synth(401, "unknown_key"));
    }
    # Compare digests of both sides: the comparison time tells nothing about the expected MAC.
    if (digest.hash_sha256(digest.base64url_nopad_hex(req.http.X-Th-Mac))
        != digest.hash_sha256(regsub(req.http.X-Th-Ticket, "^.*\.([^.]*)$", "\1"))) {
        return (synth(401, "bad_signature"));
    }
    # From here on, header and payload are the issuer's own bytes.
    if (req.http.X-Th-Jh !~ {"[{,]"alg":"HS256"[,}]"}) {
        return (synth(401, "bad_algorithm"));
    }
    set req.http.X-Th-Payload = regsub(req.http.X-Th-Ticket, "^[^.]+\.([^.]+)\..*$", "\1");
    set req.http.X-Th-Claims = digest.base64url_nopad_decode(req.http.X-Th-Payload);
    if (req.http.X-Th-Claims !~ {"[{,]"iss":"townhall"[,}]"}
        || req.http.X-Th-Claims !~ {"[{,]"sub":""}
        || req.http.X-Th-Claims !~ {"[{,]"exp":[0-9]{1,12}[,}]"}) {
        return (synth(401, "malformed_token"));
    }
@@REVOKED@@
    if (std.integer(regsub(req.http.X-Th-Claims, {"^.*[{,]"exp":([0-9]{1,12})[,}].*$"}, "\1"), 0)
        <= std.integer(time=now)) {
        return (synth(401, "expired_token"));
    }
    if (req.http.X-Th-Claims ~ {"[{,]"sid":"@@SPACE_RE@@"[,}]"}) {
        if (regsub(req.http.X-Th-Claims, {"^.*[{,]"sid":"(@@SPACE_RE@@)"[,}].*$"}, "\1")
            != req.http.X-Th-Space) {
            return (synth(403, "wrong_space"));
        }
    } elsif (req.http.X-Th-Claims !~ {"[{,]"sid":null[,}]"}
        || req.http.X-Th-Claims !~ {"[{,]"grants":\[[^\]]*"operator""}) {
        return (synth(403, "wrong_space"));
    }
    if (req.http.X-Th-Claims !~ {"[{,]"grants":\[[^\]]*"(listen|operator)""}) {
        return (synth(403, "missing_grant"));
    }
}

sub th_mac {
@@KEYS@@
}

sub th_normalise {
    set req.http.X-Th-Query = "";
    if (req.http.X-Th-Name == "live.m3u8" && req.url ~ "[?&]_HLS_(msn|part)=") {
        if (req.url !~ "[?&]_HLS_msn=[0-9]{1,10}(&|$)"
            || (req.url ~ "[?&]_HLS_part=" && req.url !~ "[?&]_HLS_part=[0-9]{1,3}(&|$)")) {
            return (synth(400, "bad_hls_request"));
        }
        set req.http.X-Th-Msn = regsub(req.url, "^.*[?&]_HLS_msn=0*([0-9]{1,10})(&.*)?$", "\1");
        set req.http.X-Th-Query = "?_HLS_msn=" + req.http.X-Th-Msn;
        if (req.url ~ "[?&]_HLS_part=") {
            set req.http.X-Th-Part = regsub(req.url,
                "^.*[?&]_HLS_part=0*([0-9]{1,3})(&.*)?$", "\1");
            set req.http.X-Th-Query = req.http.X-Th-Query + "&_HLS_part=" + req.http.X-Th-Part;
        }
    }
    set req.url = regsub(req.url, "\?.*$", "") + req.http.X-Th-Query;
    set req.http.X-Th-Key = "/hls/" + req.http.X-Th-Space + "/" + req.http.X-Th-Name
        + req.http.X-Th-Query;
}

sub vcl_hash {
    if (req.http.X-Th-Key) {
        # Ticket-free key: all listeners of a space share one object per name and position.
        hash_data(req.http.X-Th-Key);
        return (lookup);
    }
}

sub vcl_backend_fetch {
@@UNSET_BEREQ@@
    if (bereq.url ~ "^/api/spaces/[^/]+/events") {
        # Server-sent events pass through; they may be quiet for a while.
        set bereq.between_bytes_timeout = 1h;
    }
}

sub vcl_backend_response {
    if (bereq.uncacheable) {
        return (deliver);
    }
    unset beresp.http.Set-Cookie;
    if (beresp.status == 200 || beresp.status == 206) {
        if (beresp.ttl <= 0s) {
            set beresp.uncacheable = true;
            set beresp.ttl = 0s;
            return (deliver);
        }
        if (bereq.url ~ "\.m3u8(\?|$)" || bereq.url ~ "^/api/") {
            # Dynamic documents: never hand out a stale one while refreshing.
            set beresp.grace = 0s;
            set beresp.keep = 0s;
        }
        return (deliver);
    }
    if (beresp.status == 401 || beresp.status == 403 || beresp.status == 429) {
        # About one client's ticket or rate, not about the object: never shared, and with
        # ttl 0 no hit-for-miss object lingers, so the next request collapses again.
        set beresp.uncacheable = true;
        set beresp.ttl = 0s;
        return (deliver);
    }
    # 404, 400, 503 (part did not appear in time), other errors: the same for everyone.
    # Cached briefly so the waiters of a held request are answered together; never long.
    set beresp.ttl = @@ERROR_TTL@@;
    set beresp.grace = 0s;
    set beresp.keep = 0s;
    return (deliver);
}

sub vcl_backend_error {
    set beresp.http.Content-Type = "application/problem+json";
    set beresp.http.Cache-Control = "no-store";
    set beresp.http.Retry-After = "1";
    set beresp.body = @@BACKEND_ERROR_BODY@@;
    set beresp.ttl = @@ERROR_TTL@@;
    set beresp.grace = 0s;
    set beresp.keep = 0s;
    return (deliver);
}

sub vcl_deliver {
    set resp.http.X-Edge = "@@NAME@@";
    if (obj.hits > 0) {
        set resp.http.X-Edge-Cache = "hit";
    } else {
        set resp.http.X-Edge-Cache = "miss";
    }
}

sub vcl_synth {
    set resp.http.X-Edge = "@@NAME@@";
    std.log("th_out:" + resp.reason);
    if (resp.reason == "probe") {
        set resp.body = "";
        return (deliver);
    }
@@SYNTH@@
}
"""
