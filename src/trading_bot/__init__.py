"""trading-bot: an asyncio daemon that trades crypto futures through ccxt."""

__version__ = "0.1.0"
