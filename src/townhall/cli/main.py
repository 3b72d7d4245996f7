"""The ``townhall`` command."""

from __future__ import annotations

import typer

from . import spaces, users
from .edge import edge_app, edge_config
from .media_commands import register as register_media_commands
from .report import report
from .serve import serve

app = typer.Typer(
    name="townhall",
    help="Live audio spaces: a real-time stage and an audience of any size.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("serve")(serve)
app.command("report")(report)
app.command("edge-config")(edge_config)
app.add_typer(edge_app, name="edge")
app.add_typer(users.app, name="user")
app.add_typer(spaces.app, name="space")
register_media_commands(app)


def main() -> None:
    app()
