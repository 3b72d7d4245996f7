"""nginx configuration for a standard-HLS edge: pure, settings in, text out.

Why a second edge, and why only standard HLS (docs/edge.md has the measurements): nginx
answers a cached request in its event loop for a fraction of Varnish's CPU (≈ 17 vs ≈ 100 µs
here), but ``proxy_cache_lock`` waiters re-check the lock every 500 ms and a short lock
timeout stops collapsing held requests, so nginx cannot carry LL-HLS (parts and blocking
reloads, each new one awaited by every listener at once). It can carry the standard-HLS
variant the origin also publishes (``std.m3u8``, 4 s segments ``std{n}.m4s``): no held
requests, about one request per listener every 2 s, and a 500 ms wait for the first
requesters of a new segment is harmless with 12 s of buffer.

What the configuration does, in request order:

* ``/hls/{space}/l/{kid}/{exp}/{sub64}/{jti}/{mac}/{name}`` (a listener *link*,
  :mod:`townhall.auth.links`): ``secure_link`` recomputes the MD5 MAC with the link key derived
  from the ticket key named by ``kid`` (the ticket keys themselves are not in the file) and
  checks the expiry; then the block list (``geo``) and the revoked ``sub``/``jti`` (``map``).
  Only ``std.m3u8``, ``std{n}.m4s``, ``init.mp4``, ``replay.m3u8`` and ``seg{n}.m4s`` pass;
  LL-HLS names get a 404 that says where they are served.
* ``/hls/`` paths in any other form (JWT tickets ``/t/``, no ticket) are refused with the
  same problem+json codes as the Varnish edge and the origin; the origin sees nothing.
* The cache key is ``/hls/{space}/{name}``: no link, no query string (every query is
  dropped), so one object serves all listeners; the origin request is the first
  requester's link path (the origin checks it again). Concurrent misses wait on
  ``proxy_cache_lock`` (one origin fetch per object); an expired playlist is refreshed in
  the background while listeners get the previous copy (``use_stale updating``), so no
  listener ever waits for a playlist (media and errors are never served stale). TTLs are
  set here, not taken from the origin: playlists 1 s, media 10 min (LRU-evicted,
  immutable anyway), 400/404/5xx 1 s; 401/403/429 from the origin are never cached.
* ``GET /api/spaces/{id}/state`` is cached 1 s (query dropped); other paths pass through
  unbuffered (API calls, server-sent events).
* Every ``/hls/`` request except a playlist served from cache is logged to ``access.log``
  (buffered, 64 KiB / 1 s) in the observation format the log reader parses
  (:data:`townhall.watch.ingest.OBS_FORMAT`'s fields: client, status, hit/miss, time, path
  without the link, then ``|code|name|l:{sub64}``), never the MAC.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ..auth.links import (
    EXP_RE,
    JTI_RE,
    KID_RE,
    MAC_RE,
    SUB64_RE,
    derive_link_key,
    encode_subject,
)
from .settings import EdgeSettings
from .varnish import REFUSALS, SPACE_RE, problem_body

PLAYLIST_NAME_RE = r"std\.m3u8|replay\.m3u8"
MEDIA_NAME_RE = r"init\.mp4|std(?:0|[1-9][0-9]{0,9})\.m4s|seg(?:0|[1-9][0-9]{0,9})\.m4s"
"""Names an nginx edge serves: the standard-HLS variant, its init segment and the replay."""
PLAYLIST_TTL_SECONDS = 1
"""How long the edge keeps a playlist (then refreshes it in the background, one origin fetch)."""
PLAYLIST_TTL = f"{PLAYLIST_TTL_SECONDS}s"
MEDIA_TTL = "10m"
ACCESS_LOG = "access.log"
"""The observation log, relative to the nginx prefix (``-p``)."""
EDGE_REFUSALS: dict[str, tuple[int, str, str]] = {
    **REFUSALS,
    "ll_hls_elsewhere": (
        404,
        "Not Found",
        "this edge serves standard HLS through listener links (std.m3u8); LL-HLS and "
        "JWT tickets are served by the LL-HLS edge",
    ),
}
_TOKEN_ID = re.compile(r"^[A-Za-z0-9:_.@-]{1,128}$")


@dataclass(frozen=True)
class NginxOptions:
    """How the generated nginx runs (paths are relative to its prefix, ``nginx -p DIR``)."""

    listen: str = "0.0.0.0:8081"
    """``listen`` address (HOST:PORT; ``[v6]:PORT`` for IPv6)."""
    workers: str = "auto"
    """``worker_processes``: one event loop per core is what nginx is built for."""
    user: str | None = "www-data"
    """Worker user when nginx starts as root (ignored with a warning otherwise)."""
    cache_size: str = "256m"
    """``max_size`` of the media cache."""
    connections: int = 65536
    """``worker_connections`` (each listener holds one keep-alive connection)."""
    nofile: int | None = 131072
    """``worker_rlimit_nofile``; None leaves the limit nginx inherits."""


def render_nginx(
    settings: EdgeSettings,
    options: NginxOptions | None = None,
    blocked: tuple[str, ...] = (),
    revoked: tuple[str, ...] = (),
) -> str:
    """The complete nginx.conf (holds the derived link keys: keep it private)."""
    opts = options or NginxOptions()
    text = _TEMPLATE
    for marker, value in (
        ("@@LINK_PLAYLISTS@@", _link_block(PLAYLIST_NAME_RE, PLAYLIST_TTL)),
        ("@@LINK_MEDIA@@", _link_block(MEDIA_NAME_RE, MEDIA_TTL)),
        ("@@USER@@", f"user {_word(opts.user)};" if opts.user else "# (no user directive)"),
        ("@@WORKERS@@", _word(opts.workers)),
        ("@@CONNECTIONS@@", str(int(opts.connections))),
        ("@@NOFILE@@", f"worker_rlimit_nofile {int(opts.nofile)};" if opts.nofile else ""),
        ("@@CACHE_SIZE@@", _word(opts.cache_size)),
        ("@@LISTEN@@", _word(opts.listen)),
        ("@@ORIGIN@@", f"{_host(settings.origin_host)}:{settings.origin_port}"),
        ("@@HOLD@@", f"{max(1, round(settings.hold_timeout))}s"),
        ("@@BLOCKED@@", _indent(_blocked_geo(blocked))),
        ("@@LINK_KEYS@@", _indent(_link_keys(settings))),
        ("@@REVOKED@@", _indent(_revoked_maps(revoked))),
        ("@@ACCESS_LOG@@", ACCESS_LOG),
        ("@@SPACE_RE@@", SPACE_RE),
    ):
        text = text.replace(marker, value)
    for code in EDGE_REFUSALS:
        if f"@@REFUSE:{code}@@" in text:
            text = text.replace(f"@@REFUSE:{code}@@", _refuse(code, settings.name))
    return text.replace("@@NAME@@", _word(settings.name))


def _indent(block: str) -> str:
    return "\n".join("    " + line for line in block.splitlines())


def _word(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:\[\]/-]{1,200}", value):
        raise ValueError(f"{value!r} cannot be written into an nginx configuration")
    return value


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else _word(host)


def _blocked_geo(cidrs: tuple[str, ...]) -> str:
    lines = ["geo $th_blocked {", "    default 0;"]
    for cidr in cidrs:
        lines.append(f"    {ipaddress.ip_network(cidr, strict=False)} 1;")
    lines.append("}")
    return "\n".join(lines)


def _link_keys(settings: EdgeSettings) -> str:
    lines = ["map $th_kid $th_link_key {", '    default "";']
    for key in settings.keys:
        lines.append(f'    "{_word(key.kid)}" "{derive_link_key(key.secret)}";')
    lines.append("}")
    return "\n".join(lines)


def _revoked_maps(values: tuple[str, ...]) -> str:
    subs = ["map $th_sub $th_revoked_sub {", "    default 0;"]
    jtis = ["map $th_jti $th_revoked_jti {", "    default 0;"]
    for value in values:
        if not _TOKEN_ID.match(value):
            continue
        subs.append(f'    "{encode_subject(value)}" 1;')
        if re.fullmatch(JTI_RE, value):
            jtis.append(f'    "{value}" 1;')
    return "\n".join([*subs, "}", *jtis, "}"])


def _refuse(code: str, name: str) -> str:
    """Statements answering a refusal: logged code, headers (an ``add_header`` inside ``if``
    replaces the outer ones, so ``X-Edge`` is repeated) and the problem document."""
    status, title, detail = EDGE_REFUSALS[code]
    body = problem_body(code, status, title, f"{detail} (refused at the edge)")
    if "$" in body or "\\" in body:
        raise ValueError(f"refusal {code} cannot be written into nginx")
    body = body.replace("'", "\\'")
    return (
        f"set $th_out {code}; "
        f"add_header X-Edge {_word(name)} always; "
        'add_header Cache-Control "no-store" always; '
        f"return {status} '{body}';"
    )


def _link_block(names: str, ttl: str) -> str:
    """A location for link requests to ``names``: every check, then the cache with ``ttl``
    for 200s. Playlists and media differ only in their TTL, which nginx cannot choose per
    request, hence two generated copies."""
    pattern = (
        rf'"^/hls/(?<th_space>{SPACE_RE})/l/(?<th_kid>{KID_RE})/(?<th_exp>{EXP_RE})'
        rf"/(?<th_sub>{SUB64_RE})/(?<th_jti>{JTI_RE})/(?<th_mac>{MAC_RE})"
        rf'/(?<th_name>{names})$"'
    )
    stale = _STALE_PLAYLIST if names == PLAYLIST_NAME_RE else _STALE_MEDIA
    return (
        _LINK_BLOCK.replace("@@PATTERN@@", pattern)
        .replace("@@TTL@@", ttl)
        .replace("@@STALE@@", stale)
    )


_STALE_PLAYLIST = """\
            # An expired playlist is refreshed in the background; meanwhile (and while
            # the origin is away) listeners get the previous copy instead of waiting.
            proxy_cache_use_stale updating error timeout http_500 http_502 http_503 http_504;
            proxy_cache_background_update on;"""
_STALE_MEDIA = """\
            # Media never changes once it exists; a cached 404 is never served stale
            # (the segment may exist now).
            proxy_cache_use_stale off;"""


_LINK_BLOCK = r"""        location ~ @@PATTERN@@ {
            set $th_lp /hls/$th_space/$th_name;
            set $th_nm $th_name;
            set $th_tp l:$th_sub;
            access_log @@ACCESS_LOG@@ th_obs buffer=64k flush=1s if=$th_logged;
            default_type application/problem+json;
            if ($th_blocked) { @@REFUSE:blocked@@ }
            if ($request_method !~ ^(GET|HEAD)$) { @@REFUSE:method_not_allowed@@ }
            if ($th_link_key = "") { @@REFUSE:unknown_key@@ }
            secure_link $th_mac,$th_exp;
            secure_link_md5 "$th_exp/$th_space/$th_sub/$th_jti/$th_kid $th_link_key";
            if ($secure_link = "") { @@REFUSE:bad_signature@@ }
            if ($secure_link = "0") { @@REFUSE:expired_token@@ }
            if ($th_revoked_sub) { @@REFUSE:revoked_token@@ }
            if ($th_revoked_jti) { @@REFUSE:revoked_token@@ }

            add_header X-Edge @@NAME@@ always;
            add_header X-Edge-Cache $th_handling always;
            proxy_pass http://th_origin$uri;
            proxy_set_header Cookie "";
            proxy_set_header Authorization "";
            proxy_cache th_cache;
            proxy_cache_key /hls/$th_space/$th_name;
            proxy_ignore_headers Cache-Control Expires X-Accel-Expires Set-Cookie Vary;
            proxy_cache_lock on;
            proxy_cache_lock_timeout @@HOLD@@;
            proxy_cache_lock_age @@HOLD@@;
@@STALE@@
            proxy_cache_valid 200 @@TTL@@;
            proxy_cache_valid 400 404 500 502 503 504 1s;
        }"""


_TEMPLATE = r"""# townhall standard-HLS edge "@@NAME@@": generated by `townhall edge-config --kind
# nginx`. Regenerate, do not edit. It holds the link keys derived from the ticket keys: keep it
# private (mode 0600). Run: nginx -p DIR -c THIS_FILE -e stderr -g 'daemon off;'
# (DIR: a writable directory for the cache, temporary files, access.log and nginx.pid).
@@USER@@
worker_processes @@WORKERS@@;
@@NOFILE@@
pid nginx.pid;
error_log stderr warn;

events {
    worker_connections @@CONNECTIONS@@;
    multi_accept on;
}

http {
    server_tokens off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    reset_timedout_connection on;
    client_max_body_size 1m;
    access_log off;
    log_not_found off;
    uninitialized_variable_warn off;

    client_body_temp_path tmp_body;
    proxy_temp_path tmp_proxy;
    fastcgi_temp_path tmp_fastcgi;
    uwsgi_temp_path tmp_uwsgi;
    scgi_temp_path tmp_scgi;
    proxy_cache_path cache levels=1:2 keys_zone=th_cache:32m max_size=@@CACHE_SIZE@@
                     inactive=10m use_temp_path=off;

    upstream th_origin {
        server @@ORIGIN@@ max_fails=0;
        keepalive 64;
    }

@@BLOCKED@@

    geo $th_local {
        default 0;
        127.0.0.1/32 1;
        ::1/128 1;
    }

@@LINK_KEYS@@

@@REVOKED@@

    map $upstream_cache_status $th_handling {
        HIT hit;
        STALE hit;
        UPDATING hit;
        REVALIDATED hit;
        default miss;
    }

    # Playlists served from the cache are not logged (a listener reloads one every ~2 s);
    # misses, media and refusals are.
    map "$status:$th_handling:$th_nm" $th_logged {
        "~^200:hit:[a-z]+\.m3u8$" 0;
        default 1;
    }

    map $msec $th_second {
        "~^(?<s>[0-9]+)" $s;
    }

    map $request_uri $th_raw_path {
        "~^(?<p>[^?\s]{0,200})" $p;
    }

    log_format th_obs '$remote_addr $status $th_handling $th_second $th_lp |$th_out|$th_nm|$th_tp';

    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_connect_timeout 2s;
    proxy_read_timeout @@HOLD@@;
    proxy_hide_header Set-Cookie;
    proxy_hide_header X-Edge;
    proxy_hide_header X-Edge-Cache;

    server {
        listen @@LISTEN@@ reuseport backlog=65535;
        server_name _;

        location = /_edge/probe {
            # `edge run` checks that its log reader is attached before it reports ready.
            set $th_lp /_edge/probe;
            access_log @@ACCESS_LOG@@ th_obs;
            if ($th_local = 0) { @@REFUSE:no_such_media@@ }
            add_header X-Edge @@NAME@@ always;
            return 204;
        }

@@LINK_PLAYLISTS@@

@@LINK_MEDIA@@

        location ~ "^/hls/@@SPACE_RE@@/[lt]/" {
            # Links to other names (LL-HLS) and JWT tickets: served by the LL-HLS edge.
            set $th_lp $th_raw_path;
            access_log @@ACCESS_LOG@@ th_obs buffer=64k flush=1s;
            default_type application/problem+json;
            if ($th_blocked) { @@REFUSE:blocked@@ }
            @@REFUSE:ll_hls_elsewhere@@
        }

        location /hls/ {
            set $th_lp $th_raw_path;
            access_log @@ACCESS_LOG@@ th_obs buffer=64k flush=1s;
            default_type application/problem+json;
            if ($th_blocked) { @@REFUSE:blocked@@ }
            # Ticketless paths are refused: the edge cannot tell a public space from a
            # ticketed one without asking the origin.
            @@REFUSE:ticket_required@@
        }

        location ~ "^/api/spaces/@@SPACE_RE@@/state$" {
            default_type application/problem+json;
            if ($th_blocked) { @@REFUSE:blocked@@ }
            add_header X-Edge @@NAME@@ always;
            add_header X-Edge-Cache $th_handling always;
            proxy_pass http://th_origin$uri;
            proxy_set_header Cookie "";
            proxy_set_header Authorization "";
            proxy_cache th_cache;
            proxy_cache_key $uri;
            proxy_ignore_headers Cache-Control Expires X-Accel-Expires Set-Cookie Vary;
            proxy_cache_lock on;
            proxy_cache_use_stale updating;
            proxy_cache_background_update on;
            proxy_cache_valid 200 400 404 500 502 503 504 1s;
        }

        location / {
            # API calls, server-sent events and pages: not cached here.
            default_type application/problem+json;
            if ($th_blocked) { @@REFUSE:blocked@@ }
            add_header X-Edge @@NAME@@ always;
            proxy_pass http://th_origin;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 1h;
        }
    }
}
"""
