"""The command line: ``mlpbench train | backends | parity | bench | compare | tune`` (``app.main``)."""

from .app import entry, main

__all__ = ["entry", "main"]
