#!/usr/bin/env bash
# The real programs the tests drive: systemd-analyze, logrotate, tmux, shellcheck, promtool, chromium. Installed from
# Debian/Ubuntu packages when missing (as root), or named for you to install.
set -euo pipefail

declare -A PACKAGE_OF=([systemd-analyze]=systemd [logrotate]=logrotate [tmux]=tmux [shellcheck]=shellcheck
                      [promtool]=prometheus [chromium]=chromium)
missing=()
for tool in "${!PACKAGE_OF[@]}"; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        missing+=("${PACKAGE_OF[$tool]}")
    fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "error: the tests need these packages: ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
    exit 1
fi
