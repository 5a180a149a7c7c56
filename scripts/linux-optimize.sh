#!/usr/bin/env bash
# Linux tuning for trading-bot: more file descriptors, larger network buffers, faster TCP keepalive,
# deeper accept queues, memory overcommit for the caches. Written persistently and applied.
#
#   sudo scripts/linux-optimize.sh            # write /etc/sysctl.d + /etc/security/limits.d, apply
#   scripts/linux-optimize.sh --dry-run       # print the plan, change nothing
#   scripts/linux-optimize.sh --check         # current vs wanted; exit 1 when anything differs
#   scripts/linux-optimize.sh --root DIR      # write the files under DIR instead of / (no apply)
#   scripts/linux-optimize.sh --user NAME     # limit the nofile raise to one user (default: all)
#
# Running it twice changes nothing the second time. CPU pinning is not done here: use
# CPUAffinity= in the systemd unit or `taskset -c 0-1 ./launcher.sh` (see README).
set -euo pipefail

MODE=apply
ROOT_DIR="/"
LIMIT_USER="*"
NOFILE=65536

SYSCTLS=(
    "net.core.rmem_max=134217728"
    "net.core.wmem_max=134217728"
    "net.ipv4.tcp_rmem=4096 87380 134217728"
    "net.ipv4.tcp_wmem=4096 65536 134217728"
    "net.ipv4.tcp_keepalive_time=60"
    "net.ipv4.tcp_keepalive_intvl=10"
    "net.core.somaxconn=65535"
    "net.ipv4.tcp_max_syn_backlog=65535"
    "vm.overcommit_memory=1"
)

while [ "$#" -gt 0 ]; do
    case "$1" in
        --dry-run) MODE=dry-run; shift ;;
        --check) MODE=check; shift ;;
        --root) ROOT_DIR="${2:?--root needs a directory}"; shift 2 ;;
        --user) LIMIT_USER="${2:?--user needs a name}"; shift 2 ;;
        -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

ROOT_DIR="${ROOT_DIR%/}"
SYSCTL_FILE="$ROOT_DIR/etc/sysctl.d/99-trading-bot.conf"
LIMITS_FILE="$ROOT_DIR/etc/security/limits.d/99-trading-bot.conf"

sysctl_content() {
    echo "# trading-bot network and memory tuning (scripts/linux-optimize.sh)"
    local entry
    for entry in "${SYSCTLS[@]}"; do
        echo "${entry%%=*} = ${entry#*=}"
    done
}

limits_content() {
    echo "# trading-bot: file descriptors for many exchange connections (scripts/linux-optimize.sh)"
    echo "# Login sessions (tmux, launcher.sh) only; the systemd unit sets LimitNOFILE=$NOFILE itself."
    printf '%-10s soft nofile %s\n' "$LIMIT_USER" "$NOFILE"
    printf '%-10s hard nofile %s\n' "$LIMIT_USER" "$NOFILE"
}

normalize() {
    tr -s ' \t' ' ' <<< "$1" | sed 's/^ //; s/ $//'
}

current_sysctl() {
    local key="$1" path
    path="/proc/sys/${key//./\/}"
    if [ -r "$path" ]; then
        normalize "$(cat "$path")"
    else
        echo "unavailable"
    fi
}

if [ "$MODE" = "check" ]; then
    differs=0
    printf '%-32s %-28s %-28s %s\n' "setting" "current" "wanted" "state"
    for entry in "${SYSCTLS[@]}"; do
        key="${entry%%=*}"
        wanted="$(normalize "${entry#*=}")"
        current="$(current_sysctl "$key")"
        state="ok"
        if [ "$current" != "$wanted" ]; then state="DIFFERS"; differs=1; fi
        printf '%-32s %-28s %-28s %s\n' "$key" "$current" "$wanted" "$state"
    done
    current_nofile="$(ulimit -Hn)"
    state="ok"
    if [ "$current_nofile" != "unlimited" ] && [ "$current_nofile" -lt "$NOFILE" ]; then state="DIFFERS"; differs=1; fi
    printf '%-32s %-28s %-28s %s\n' "nofile (hard, this shell)" "$current_nofile" "$NOFILE" "$state"
    for file in "$SYSCTL_FILE" "$LIMITS_FILE"; do
        case "$file" in
            "$SYSCTL_FILE") wanted_content="$(sysctl_content)" ;;
            *) wanted_content="$(limits_content)" ;;
        esac
        if [ -f "$file" ] && [ "$(cat "$file")" = "$wanted_content" ]; then state="ok"; else state="DIFFERS"; differs=1; fi
        printf '%-32s %-57s %s\n' "file" "$file" "$state"
    done
    if [ "$differs" -eq 1 ]; then
        echo "some settings differ from what trading-bot wants: run 'sudo scripts/linux-optimize.sh'"
        exit 1
    fi
    echo "all settings as wanted"
    exit 0
fi

if [ "$MODE" = "dry-run" ]; then
    echo "would write $SYSCTL_FILE:"
    sysctl_content | sed 's/^/    /'
    echo "would write $LIMITS_FILE:"
    limits_content | sed 's/^/    /'
    if [ "$ROOT_DIR" = "" ]; then
        echo "would run: sysctl --system"
    fi
    exit 0
fi

if [ "$ROOT_DIR" = "" ] && [ "$(id -u)" -ne 0 ]; then
    echo "error: changing kernel settings needs root: run it with sudo (or --dry-run / --check)" >&2
    exit 1
fi

changed=0
write_if_changed() {
    local file="$1" content="$2"
    if [ -f "$file" ] && [ "$(cat "$file")" = "$content" ]; then
        echo "unchanged $file"
        return
    fi
    mkdir -p "$(dirname "$file")"
    local tmp
    tmp="$(mktemp "$file.XXXXXX")"
    printf '%s\n' "$content" > "$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$file"
    echo "wrote $file"
    changed=$((changed + 1))
}

write_if_changed "$SYSCTL_FILE" "$(sysctl_content)"
write_if_changed "$LIMITS_FILE" "$(limits_content)"

if [ "$ROOT_DIR" = "" ]; then
    if [ "$changed" -gt 0 ]; then
        sysctl --system > /dev/null
        echo "applied with sysctl --system"
    fi
    echo "new login sessions get nofile $NOFILE; check with: scripts/linux-optimize.sh --check"
else
    echo "files written under $ROOT_DIR (not applied: --root)"
fi
echo "$changed file(s) changed"
