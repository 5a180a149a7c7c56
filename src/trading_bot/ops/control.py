"""The control socket of a running daemon: `control.sock` in its state folder (mode 0600, no port),
one JSON request per connection and one JSON answer. This side is the client `trading-bot pause |
resume | flatten | reload` uses; the daemon's server is engine/control.py."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Any

CONTROL_SOCKET = "control.sock"


ANSWER_TIMEOUT_S = 120.0  # a flatten waits for the heartbeat in progress, then for the exchange


MAX_MESSAGE = 64 * 1024


class NoDaemon(RuntimeError):
    """No daemon answers on that state folder."""


def socket_path(state_dir: Path) -> Path:
    return state_dir / CONTROL_SOCKET


def peer_uid(sock: socket.socket) -> int | None:
    """Who is asking (the connecting process's uid, from the kernel), for the log."""
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                             struct.calcsize("3i")))
    except (OSError, AttributeError):  # (SO_PEERCRED is Linux's)
        return None
    return int(uid)


def ask(state_dir: Path, request: dict[str, Any], timeout_s: float = ANSWER_TIMEOUT_S) -> dict[str, Any]:
    """Send one request to the daemon of `state_dir` and return its answer; NoDaemon if none runs."""
    path = socket_path(state_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):  # no socket, or a dead daemon's left-over one
            raise NoDaemon(f"no trading-bot is running on {state_dir}") from None
        sock.sendall(json.dumps(request).encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(MAX_MESSAGE):
            data += chunk
    try:
        answer = json.loads(data)
    except ValueError:
        raise NoDaemon(f"the trading-bot on {state_dir} gave no answer (it may be stopping)") from None
    if not isinstance(answer, dict):
        raise NoDaemon(f"the trading-bot on {state_dir} gave no usable answer")
    return answer
