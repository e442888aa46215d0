"""Which process holds which TCP socket, read from `/proc` (Linux): how the tests and the
benchmark tell a server's workers apart without asking the server.

A socket is an inode: `/proc/net/tcp` (and `tcp6`) lists each with its addresses and
state, and `/proc/<pid>/fd` links every descriptor a process holds to `socket:[inode]`.
"""

from __future__ import annotations

import os
from pathlib import Path

_LISTEN = "0A"
_ESTABLISHED = "01"


def _entries() -> list[list[str]]:
    rows: list[list[str]] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        rows.extend(line.split() for line in lines)
    return rows


def _port(address: str) -> int:
    return int(address.rpartition(":")[2], 16)


def listening_inodes(port: int) -> set[int]:
    """The listening sockets on `port`, whatever address they are bound to."""
    return {int(row[9]) for row in _entries() if row[3] == _LISTEN and _port(row[1]) == port}


def accepted_inode(server_port: int, client_port: int) -> int | None:
    """The server's end of the open connection from `client_port` to `server_port`."""
    for row in _entries():
        if row[3] == _ESTABLISHED and _port(row[1]) == server_port and _port(row[2]) == client_port:
            return int(row[9])
    return None


def socket_inodes(pid: int) -> set[int]:
    """Every socket `pid` holds open (empty once it has exited)."""
    found: set[int] = set()
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for descriptor in descriptors:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{descriptor}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[len("socket:[") : -1]))
    return found


def children(pid: int) -> list[int]:
    """The processes `pid` started that are still running (or not yet reaped)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def listening_workers(supervisor: int, port: int) -> set[int]:
    """The children of `supervisor` that hold a socket listening on `port`: its workers
    that accept connections."""
    listening = listening_inodes(port)
    return {child for child in children(supervisor) if socket_inodes(child) & listening}


def owner(inode: int, candidates: set[int]) -> int | None:
    """Which of the `candidates` processes holds the socket `inode`."""
    return next((pid for pid in candidates if inode in socket_inodes(pid)), None)


def has_exited(pid: int) -> bool:
    """Whether `pid` has exited and been reaped by its parent."""
    return not Path(f"/proc/{pid}").exists()
