"""The error a daemon that cannot start raises: its message is the one line the user sees."""

from __future__ import annotations


class StartupError(RuntimeError):
    """The bot cannot start; the message is the one line the user sees."""
