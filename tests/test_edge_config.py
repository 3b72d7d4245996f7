"""``townhall edge-config``: the generated VCL compiles, embeds only checkable keys, and the
command refuses what cannot work (https origins, an active key with a zero byte)."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from townhall.auth import Keyring, SigningKey
from townhall.cli.edge import edge_app, edge_config
from townhall.edge.settings import (
    EdgeKey,
    EdgeSettingsError,
    build_settings,
    load_edge_keys,
    parse_listen,
    parse_origin,
)
from townhall.edge.varnish import render_vcl

needs_varnish = pytest.mark.skipif(shutil.which("varnishd") is None, reason="needs varnish")

NASTY = SigningKey("k1", bytes(range(128, 160)) + b'"}\r\n{"', 2.0)
OLD = SigningKey("k0", bytes(range(1, 33)) + b"\0\0", 1.0)
ZERO = SigningKey("kz", b"ab\0cd" * 6, 0.5)


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("edge-config")(edge_config)
    app.add_typer(edge_app, name="edge")
    return app


def keys_file(tmp_path: Path, *keys: SigningKey) -> Path:
    path = tmp_path / "keys.json"
    Keyring(list(keys)).save(path)
    return path


def test_zero_bytes_trailing_are_inert_inner_ones_are_refused() -> None:
    assert EdgeKey("a", b"abc\0\0").edge_secret == b"abc"
    assert EdgeKey("a", b"a\0c").edge_secret is None
    assert EdgeKey("a", b"\0\0").edge_secret is None
    assert EdgeKey("a", b"x" * 70 + b"\0").edge_secret is None  # long keys are hashed whole
    assert EdgeKey("a", b"x" * 70).edge_secret == b"x" * 70


def test_settings_refuse_what_cannot_work(tmp_path: Path) -> None:
    assert parse_origin("http://10.0.0.5:8080") == ("10.0.0.5", 8080)
    assert parse_origin("http://origin.internal") == ("origin.internal", 80)
    assert parse_listen("[::1]:6081") == ("::1", 6081)
    for bad in (
        "https://x:1",
        "http://x:1/hls",
        "ftp://x",
        "http://:80",
        "http://x:99999",
        "http://[::1",
        "http://x:0",
        "http://x:port",
    ):
        with pytest.raises(EdgeSettingsError):
            parse_origin(bad)
    for bad in ("6081", "host:", "h:99999"):
        with pytest.raises(EdgeSettingsError):
            parse_listen(bad)
    with pytest.raises(EdgeSettingsError, match="zero byte"):
        build_settings("http://o:1", (EdgeKey("kz", ZERO.secret), EdgeKey("k0", OLD.secret)))
    settings = build_settings("http://o:1", load_edge_keys(keys_file(tmp_path, NASTY, OLD, ZERO)))
    assert [k.kid for k in settings.keys] == ["k1", "k0"]
    assert settings.skipped_kids == ("kz",)
    (tmp_path / "bad.json").write_text(
        '{"keys": [{"kid": "a\\"b", "secret": "00", "created_at": 1}]}'
    )
    with pytest.raises(EdgeSettingsError, match="key id"):
        load_edge_keys(tmp_path / "bad.json")
    with pytest.raises(EdgeSettingsError, match="does not exist"):
        load_edge_keys(tmp_path / "missing.json")


@needs_varnish
def test_generated_vcl_compiles_with_hostile_key_bytes(tmp_path: Path) -> None:
    settings = build_settings("http://127.0.0.1:9", load_edge_keys(keys_file(tmp_path, NASTY, OLD)))
    vcl = render_vcl(settings)
    assert NASTY.secret.hex() in vcl and OLD.secret.rstrip(b"\0").hex() in vcl
    path = tmp_path / "edge.vcl"
    path.write_text(vcl)
    proc = subprocess.run(
        ["varnishd", "-C", "-j", "none", "-f", str(path), "-n", str(tmp_path / "vn")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_edge_config_writes_a_private_file(tmp_path: Path) -> None:
    keys = keys_file(tmp_path, NASTY, OLD, ZERO)
    out = tmp_path / "edge.vcl"
    result = CliRunner().invoke(
        cli(),
        [
            "edge-config",
            "--origin",
            "http://127.0.0.1:8080",
            "--keys",
            str(keys),
            "--out",
            str(out),
            "--listen",
            "0.0.0.0:80",
        ],
    )
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    text = out.read_text()
    assert "import digest;" in text and '.port = "8080";' in text
    assert "kz" in text and ZERO.secret.hex() not in text
    result = CliRunner().invoke(
        cli(), ["edge-config", "--origin", "http://127.0.0.1:8080", "--keys", str(keys)]
    )
    assert result.exit_code == 0 and "vcl 4.1;" in result.output


def test_nginx_config_is_valid_for_nginx_and_holds_no_ticket_key(tmp_path: Path) -> None:
    keys = keys_file(tmp_path, NASTY)
    out = tmp_path / "edge.conf"
    result = CliRunner().invoke(
        cli(),
        [
            "edge-config",
            "--origin",
            "http://127.0.0.1:8080",
            "--keys",
            str(keys),
            "--kind",
            "nginx",
            "--listen",
            "127.0.0.1:8081",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    text = out.read_text()
    assert NASTY.secret.hex() not in text  # only the derived link key
    assert "secure_link_md5" in text and "server 127.0.0.1:8080" in text
    if shutil.which("nginx") is None:
        pytest.skip("needs Debian's nginx-light to check the syntax")
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    check = subprocess.run(
        ["nginx", "-t", "-q", "-p", str(prefix), "-c", str(out), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr
