"""Who an engine is, in the leases it holds, and whether another engine's process is gone.

An owner is ``host:pid:boot:pidns:random``: the host name, the process id, the boot id of the
kernel (``/proc/sys/kernel/random/boot_id``) and the inode of the process's pid namespace
(``/proc/self/ns/pid``), ``-`` for either where the system has none. A pid means something
only within one boot of one pid namespace: two containers with the same host name (host
networking, a fixed ``hostname:``) have separate pid namespaces, so a pid that is dead here may be
a live engine there. Only owners of this very host, boot and pid namespace are judged by their
pid; any other owner, and owners in the older ``host:pid:random`` form, are left to their lease
expiring.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid

UNKNOWN = "-"


@functools.cache
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            return file.read().strip().replace(":", "") or UNKNOWN
    except OSError:
        return UNKNOWN


@functools.cache
def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return UNKNOWN


def _place() -> tuple[str, str, str]:
    """This process's host, boot and pid namespace: where its pids are meaningful."""
    return socket.gethostname(), _boot_id(), _pid_namespace()


def new_owner() -> str:
    """A new owner id for an engine of this process."""
    host, boot, namespace = _place()
    return f"{host}:{os.getpid()}:{boot}:{namespace}:{uuid.uuid4().hex[:8]}"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists in this pid namespace."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def known_dead(owner: str) -> bool:
    """Whether ``owner`` is an engine of a process that has ended, as far as this process can
    tell: the owner names this host, boot and pid namespace, and no process has its pid."""
    parts = owner.split(":")
    if len(parts) != 5 or not parts[1].isdigit():
        return False
    host, pid, boot, namespace, _ = parts
    return (host, boot, namespace) == _place() and not pid_alive(int(pid))
