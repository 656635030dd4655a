"""The command line: ``mlpbench train | backends | parity | bench | compare | tune`` (``app.main``)."""

from .app import main

__all__ = ["main"]
