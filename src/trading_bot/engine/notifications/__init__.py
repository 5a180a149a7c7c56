"""Notifications and chat commands: Telegram's Bot API and a generic JSON webhook.

Imported only when TELEGRAM_BOT_TOKEN or WEBHOOK_URL is set (Daemon.start_notifications), so a run
without them loads none of it. `notifier.Notifications` is what the daemon holds: it turns what the
recorder and the status report tell it into events (events.py), puts each into one bounded outbox
per destination (outbox.py: never awaits on the heartbeat) and, with Telegram, polls for the chat
commands (commands.py).
"""
