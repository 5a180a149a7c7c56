#!/usr/bin/env bash
# Install trading-bot as a systemd service (and its logrotate file) for this checkout.
#
#   sudo scripts/install-service.sh                  # as the checkout's owner, enable + start hint
#   sudo scripts/install-service.sh --user trading   # run as another user
#   scripts/install-service.sh --dry-run             # print what would be done (no root needed)
#   scripts/install-service.sh --render-to DIR       # only write the rendered files into DIR
#
# It renders @INSTALL_DIR@/@USER@/@GROUP@ in scripts/trading-bot.service, trading-bot@.service and
# scripts/logrotate.conf, installs them, runs `systemctl daemon-reload` and enables the service.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INSTALL_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
UNIT_DIR="/etc/systemd/system"
LOGROTATE_DIR="/etc/logrotate.d"
DRY_RUN=0
RENDER_TO=""
ENABLE=1
RUN_USER="${SUDO_USER:-$(stat -c %U "$INSTALL_DIR")}"

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ "$#" -gt 0 ]; do
    case "$1" in
        --user) RUN_USER="${2:?--user needs a name}"; shift 2 ;;
        --dir) INSTALL_DIR="$(cd "${2:?--dir needs a path}" && pwd)"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --render-to) RENDER_TO="${2:?--render-to needs a directory}"; shift 2 ;;
        --no-enable) ENABLE=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if ! RUN_GROUP="$(id -gn "$RUN_USER" 2>/dev/null)"; then
    echo "error: user '$RUN_USER' does not exist (create it, or pass --user NAME)" >&2
    exit 2
fi

render() {
    sed -e "s#@INSTALL_DIR@#${INSTALL_DIR}#g" -e "s#@USER@#${RUN_USER}#g" -e "s#@GROUP@#${RUN_GROUP}#g" "$1"
}

FILES=("trading-bot.service:$UNIT_DIR" "trading-bot@.service:$UNIT_DIR" "logrotate.conf:$LOGROTATE_DIR/trading-bot")

if [ -n "$RENDER_TO" ]; then
    mkdir -p "$RENDER_TO"
    for entry in "${FILES[@]}"; do
        name="${entry%%:*}"
        render "$SCRIPT_DIR/$name" > "$RENDER_TO/$name"
    done
    echo "rendered ${#FILES[@]} files into $RENDER_TO for $INSTALL_DIR (user $RUN_USER)"
    exit 0
fi

if [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "error: installing a systemd service needs root: run it with sudo (or use --dry-run to see the plan)" >&2
    exit 1
fi

run() {
    if [ "$DRY_RUN" -eq 1 ]; then
        echo "would run: $*"
    else
        "$@"
    fi
}

if [ ! -x "$INSTALL_DIR/.venv/bin/python" ]; then
    echo "note: $INSTALL_DIR/.venv does not exist yet; run ./launcher.sh once (as $RUN_USER) to create it"
fi

for dir in data logs config; do
    run install -d -o "$RUN_USER" -g "$RUN_GROUP" -m 0750 "$INSTALL_DIR/$dir"
done

for entry in "${FILES[@]}"; do
    name="${entry%%:*}"
    target="${entry#*:}"
    [ "$target" = "$UNIT_DIR" ] && target="$UNIT_DIR/$name"
    if [ "$DRY_RUN" -eq 1 ]; then
        echo "would write $target:"
        render "$SCRIPT_DIR/$name" | sed 's/^/    /'
    else
        tmp="$(mktemp "$target.XXXXXX")"
        render "$SCRIPT_DIR/$name" > "$tmp"
        chmod 0644 "$tmp"
        mv -f "$tmp" "$target"
        echo "wrote $target"
    fi
done

run systemctl daemon-reload
if [ "$ENABLE" -eq 1 ]; then
    run systemctl enable trading-bot.service
fi
echo
echo "next: sudo systemctl start trading-bot && journalctl -u trading-bot -f"
