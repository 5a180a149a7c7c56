"""The error every command raises for a mistake the user can fix: main() prints it as one line on
stderr and exits 2 (EXIT_USAGE), never with a traceback."""

from __future__ import annotations

EXIT_USAGE = 2


class CliError(Exception):
    """One line for the user; exit code 2."""
