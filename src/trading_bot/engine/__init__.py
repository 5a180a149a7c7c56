"""The daemon, split by job:

daemon.py         Daemon: the process shell (signals, the run loop, stop → grace → cut short, shutdown, watchdog)
startup.py        Startup: the composition root (state, config, market data, broker; catch-up; `ready: …`)
candle_source.py  which candles the run trades on (replay / given / live / exchange or synthetic fallback)
exchange_link.py  the process's one exchange client, made on first need
heartbeat.py      Heartbeat: one tick
config_watch.py   the strategy config in force, its hot reload and the SIGHUP reload
status.py         status.json, the STATUS= line, the heartbeat line, marks and equity
recording.py      the opened/closed log lines, the journal (paper) and the saved state
supervision.py    live: reconciliation with the exchange and protection before exit; paper: nothing
clock.py          the wall, time-lapse and replay clocks
errors.py         StartupError
"""
