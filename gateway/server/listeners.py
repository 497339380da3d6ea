"""The listening sockets, owned by the master and lent to the workers.

Every worker slot has its own SO_REUSEPORT socket per listen address (so the kernel spreads
connections over per-worker accept queues, with no shared accept lock), but the master creates
them and keeps a copy: a worker that is replaced (rolling restart, crash) hands its slot's socket,
with whatever waits in its accept queue, to its successor. Closing a listening socket resets the
connections queued on it (with SO_REUSEPORT each socket has its own queue), so the master closes
one only after steering new connections away from it (`steer`) and letting its queue empty.

Steering is a classic BPF program attached to the port's reuseport group
(SO_ATTACH_REUSEPORT_CBPF, unprivileged): it returns a random index among the sockets that stay.
The kernel indexes a group by join order (listen() order) and fills the hole left by a closed
socket with the last one; `ListenGroup.order` mirrors that.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import socket
import struct

from gateway.server.sockets import BACKLOG, reuseport_socket

log = logging.getLogger("gateway.master")

SO_ATTACH_REUSEPORT_CBPF = 51
SO_DETACH_REUSEPORT_BPF = 68
_SKF_AD_RANDOM = -0x1000 + 56
_LD_W_ABS, _ALU_MOD_K, _JEQ_K, _RET_K = 0x20, 0x94, 0x15, 0x06
_MAX_STEERED = 1000  # two instructions per socket; classic BPF allows 4096


def steering_program(indices: list[int]) -> bytes:
    """cBPF: A = random % len(indices); return indices[A]."""
    ops = [(_LD_W_ABS, 0, 0, _SKF_AD_RANDOM & 0xFFFFFFFF), (_ALU_MOD_K, 0, 0, len(indices))]
    for position, index in enumerate(indices[:-1]):
        ops += [(_JEQ_K, 0, 1, position), (_RET_K, 0, 0, index)]
    ops.append((_RET_K, 0, 0, indices[-1]))
    return b"".join(struct.pack("=HBBI", *op) for op in ops)


class ListenGroup:
    """This master's sockets on one address, in the kernel's reuseport-group order."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.order: list[socket.socket] = []
        self.slot_of: dict[int, int] = {}  # fd -> worker slot
        self.steered = False

    def add(self, sock: socket.socket, slot: int) -> None:
        self.order.append(sock)
        self.slot_of[sock.fileno()] = slot

    def sockets(self, slot: int) -> list[socket.socket]:
        return [s for s in self.order if self.slot_of[s.fileno()] == slot]

    def slots(self) -> set[int]:
        return set(self.slot_of.values())

    def steer(self, away_from: set[int]) -> None:
        """New connections go only to sockets of slots not in ``away_from``."""
        keep = [i for i, s in enumerate(self.order) if self.slot_of[s.fileno()] not in away_from]
        if not keep or len(keep) > _MAX_STEERED or not self.order:
            return
        code = steering_program(keep)
        program = ctypes.create_string_buffer(code)
        fprog = struct.pack("@HP", len(code) // 8, ctypes.addressof(program))
        try:
            self.order[0].setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
            self.steered = True
        except OSError as exc:
            log.warning("cannot steer connections away from retiring sockets on %s: %s "
                        "(connections queued on them at close may be reset)", self.address, exc)

    def unsteer(self) -> None:
        if self.steered and self.order:
            with contextlib.suppress(OSError):
                self.order[0].setsockopt(socket.SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, 0)
            self.steered = False

    def close_slots(self, slots: set[int]) -> None:
        for sock in [s for s in self.order if self.slot_of[s.fileno()] in slots]:
            position = self.order.index(sock)
            # the kernel moves the group's last socket into the closed one's place
            last = self.order.pop()
            if last is not sock:
                self.order[position] = last
            del self.slot_of[sock.fileno()]
            sock.close()

    def close(self) -> None:
        self.unsteer()
        for sock in self.order:
            sock.close()
        self.order.clear()
        self.slot_of.clear()


class Listeners:
    """Every listen address's group; creates sockets for new slots and new addresses."""

    def __init__(self) -> None:
        self.groups: dict[str, ListenGroup] = {}

    def ensure(self, addresses: list[str], count: int) -> None:
        """Each slot below ``count`` has a socket on each address; raises OSError (naming the
        address) when one cannot be bound, leaving what exists untouched."""
        created: list[tuple[ListenGroup, socket.socket]] = []
        try:
            for address in addresses:
                group = self.groups.get(address) or ListenGroup(address)
                missing = [slot for slot in range(count) if not group.sockets(slot)]
                for slot in missing:
                    try:
                        sock = reuseport_socket(address, BACKLOG)
                    except OSError as exc:
                        raise OSError(exc.errno, f"cannot listen on {address}: {exc.strerror}") \
                            from None
                    sock.set_inheritable(False)
                    group.add(sock, slot)
                    created.append((group, sock))
                self.groups[address] = group
        except OSError:
            for group, sock in created:
                group.close_slots({group.slot_of[sock.fileno()]})
            raise

    def adopt(self, address: str, sockets: list[socket.socket], count: int) -> None:
        """Sockets handed over by another gateway, in their group order. Slots are shared out
        so that every socket keeps being accepted (more sockets than slots: some slots get
        several)."""
        group = ListenGroup(address)
        for position, sock in enumerate(sockets):
            sock.setblocking(False)
            group.add(sock, position % max(count, 1))
        self.groups[address] = group

    def fds(self, slot: int, addresses: list[str]) -> list[tuple[str, int]]:
        return [(address, sock.fileno()) for address in addresses
                for sock in self.groups[address].sockets(slot)]

    def all_fds(self, slot: int, addresses: list[str]) -> list[int]:
        return [fd for _address, fd in self.fds(slot, addresses)]

    def drop_addresses(self, keep: list[str]) -> None:
        for address in [a for a in self.groups if a not in keep]:
            self.groups.pop(address).close()

    def close(self) -> None:
        for group in self.groups.values():
            group.close()
        self.groups.clear()
