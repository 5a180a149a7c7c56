#!/usr/bin/env bash
# trading-bot launcher: sets up .venv on first run, shows the mode, asks before LIVE trading, then
# execs the bot (so Ctrl-C, SIGTERM and SIGHUP reach it directly). Arguments go to the bot:
#   ./launcher.sh                    paper trading (DEMO), the default
#   ./launcher.sh --cycles 10        stop after 10 heartbeats
#   ./launcher.sh status             show positions and the last heartbeat
#   tmux new-session -d -s trading ./launcher.sh
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$SCRIPT_DIR"

echo "Trading Bot Launcher (Linux)"
echo "============================"

if ! command -v "${PYTHON:-python3}" >/dev/null 2>&1; then
    echo "error: Python 3 not found. Install it: sudo apt-get install python3 python3-venv" >&2
    exit 1
fi

scripts/ensure-venv.sh requirements.txt

# Read the few values shown here from .env without executing it (no `export $(cat .env | xargs)`:
# that breaks on spaces and runs shell code). The bot itself loads .env with python-dotenv; a value
# already in the environment wins, in both places.
env_value() {
    local key="$1" line value=""
    [ -f .env ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do
        line="${line#"${line%%[![:space:]]*}"}"
        line="${line#export }"
        case "$line" in
            "$key="*)
                value="${line#"$key="}"
                value="${value%%[[:space:]]#*}"
                value="${value%"${value##*[![:space:]]}"}"
                case "$value" in
                    \"*\") value="${value:1:${#value}-2}" ;;
                    \'*\') value="${value:1:${#value}-2}" ;;
                esac
                ;;
        esac
    done < .env
    printf '%s' "$value"
}

setting() {
    local key="$1" default="$2"
    if [ -n "${!key+x}" ]; then
        printf '%s' "${!key}"
    else
        local from_file
        from_file="$(env_value "$key")"
        printf '%s' "${from_file:-$default}"
    fi
}

dry_run="$(setting DRY_RUN true)"
symbols="$(setting TRADING_SYMBOLS "BTC/USDT:USDT,ETH/USDT:USDT,SOL/USDT:USDT")"
timeframes="$(setting TRADING_TIMEFRAMES "1m,5m,15m,30m,1h,4h,1d")"

first_arg="${1:-run}"
mode="DEMO (paper trading)"
case "$(printf '%s' "$dry_run" | tr '[:upper:]' '[:lower:]')" in
    false|0|no|off)
        mode="LIVE"
        if [ "$first_arg" = "run" ] || [ "${first_arg#-}" != "$first_arg" ]; then
            echo
            echo "WARNING: DRY_RUN=false: the bot will place REAL orders with REAL money."
            printf "Type 'yes' to start LIVE trading: "
            read -r confirm || confirm=""
            if [ "$confirm" != "yes" ]; then
                echo "Aborted: live trading not confirmed. Nothing was started."
                exit 0
            fi
            export LIVE_TRADING_CONFIRMED=yes
        fi
        ;;
esac

echo
echo "Configuration:"
echo "  Mode:       $mode"
echo "  Python:     $(.venv/bin/python --version 2>&1)"
echo "  Symbols:    $symbols"
echo "  Timeframes: $timeframes"
echo

exec .venv/bin/python -m trading_bot "$@"
