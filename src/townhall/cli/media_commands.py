"""Commands that need the media stack; registered on the main app."""

from __future__ import annotations

import typer

from .speak import speak


def register(app: typer.Typer) -> None:
    from .loadtest import loadtest, simulate

    app.command("speak")(speak)
    app.command("loadtest")(loadtest)
    app.command("simulate")(simulate)
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
