"""Commands that need the media stack; registered on the main app."""

from __future__ import annotations

import typer

from .speak import speak


def register(app: typer.Typer) -> None:
    app.command("speak")(speak)
    try:
        from .listen import listen
    except ImportError:
        pass
    else:
        app.command("listen")(listen)
    try:
        from .demo import demo
    except ImportError:
        pass
    else:
        app.command("demo")(demo)
    try:
        from .recordings import clip, export
    except ImportError:
        pass
    else:
        app.command("export")(export)
        app.command("clip")(clip)
