"""The ``townhall`` command."""

from __future__ import annotations

import typer

from . import spaces, users
from .serve import serve

app = typer.Typer(
    name="townhall",
    help="Live audio spaces: a real-time stage and an audience of any size.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("serve")(serve)
app.add_typer(users.app, name="user")
app.add_typer(spaces.app, name="space")


def _register_optional() -> None:
    """Commands whose modules pull in the media stack register themselves here."""
    from . import media_commands

    media_commands.register(app)


try:
    _register_optional()
except ImportError:  # media commands not built yet
    pass


def main() -> None:
    app()
