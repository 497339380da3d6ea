"""Resolution of the host names in upstream nodes, asynchronously (c-ares through aiodns), in the
master: one resolver per machine, whose answers every worker compiles with. A worker never waits
on DNS, and nothing runs per request: a changed answer reaches the workers as a new address map
(``on_change``), applied like a reload.

Each name is resolved (A and AAAA, /etc/hosts first, as getaddrinfo does) again when the
shortest TTL of its answer expires. A failed resolution keeps the name's last good addresses
and is logged once, when the name starts failing, and once when it resolves again; it is
retried with a growing delay meanwhile."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Mapping, Sequence

import aiodns

from gateway.config import parse_nameserver

log = logging.getLogger("gateway.resolver")

#: Bounds of the time between two resolutions of a name that resolves: a TTL of 0 does not
#: make a busy loop, a TTL of days still notices a change within the hour.
MIN_TTL = 1.0
MAX_TTL = 3600.0
#: Asked again a little after the TTL, so that caches between us and the zone have let it go.
_EXPIRY_MARGIN = 0.1
#: A failing name is tried again after these delays (doubling up to the last).
RETRY_FIRST = 1.0
RETRY_MAX = 10.0
#: One resolution may take this long (every server, every try) before it counts as failed.
QUERY_TIMEOUT = 2.0


class _Name:
    """One name's state: its last good addresses and whether it is failing now."""

    def __init__(self, name: str, where: str) -> None:
        self.name = name
        self.where = where
        self.addresses: tuple[str, ...] | None = None  # None: never resolved
        self.failing = False
        self.task: asyncio.Task[None] | None = None
        self.first = asyncio.get_running_loop().create_future()  # done after the first attempt


class NodeResolver:
    """Keeps the addresses of a set of names current. ``update(names)`` sets the names to follow
    (name -> where the config uses it) and waits for the first answer of any new one;
    ``addresses()`` is the current map; ``on_change(map)`` is called when a name's addresses
    change after that."""

    def __init__(self, nameservers: Sequence[str], on_change: Callable[[dict[str, list[str]]], None]
                 ) -> None:
        self.nameservers = [parse_nameserver(s) for s in nameservers]
        self.on_change = on_change
        self.names: dict[str, _Name] = {}
        self._kept: dict[str, tuple[str, ...] | None] = {}  # addresses across a nameserver change
        self._resolver: aiodns.DNSResolver | None = None

    @property
    def resolver(self) -> aiodns.DNSResolver:
        if self._resolver is None:  # made on first use: a config without names costs nothing
            self._resolver = aiodns.DNSResolver(nameservers=self.nameservers or None, timeout=0.5,
                                                tries=2)
        return self._resolver

    def addresses(self) -> dict[str, list[str]]:
        return {n.name: list(n.addresses) for n in self.names.values() if n.addresses}

    async def set_nameservers(self, nameservers: Sequence[str]) -> None:
        """Other nameservers (a reload changed ``resolvers``): every name is asked them afresh
        by the next ``update``, keeping its last good addresses if they cannot answer."""
        wanted = [parse_nameserver(s) for s in nameservers]
        if wanted == self.nameservers:
            return
        self.nameservers = wanted
        kept = {name: entry.addresses for name, entry in self.names.items()}
        await self.update({})
        self._kept = kept
        old, self._resolver = self._resolver, None
        if old is not None:
            await old.close()

    async def update(self, names: Mapping[str, str]) -> None:
        """Follows exactly ``names``; returns once each new one has been tried once."""
        stopped = []
        for gone in set(self.names) - set(names):
            task = self.names.pop(gone).task
            if task is not None:
                task.cancel()
                stopped.append(task)
        if stopped:  # ended before their channel may be closed
            await asyncio.gather(*stopped, return_exceptions=True)
        new = []
        for name, where in names.items():
            if name not in self.names:
                entry = self.names[name] = _Name(name, where)
                entry.addresses = self._kept.get(name)
                entry.task = asyncio.ensure_future(self._follow(entry))
                new.append(entry.first)
        self._kept = {}
        if new:
            await asyncio.wait(new, timeout=QUERY_TIMEOUT + 1.0)

    async def close(self) -> None:
        await self.update({})
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None

    async def resolve(self, name: str) -> tuple[tuple[str, ...], float]:
        """The addresses of ``name`` (sorted: the order of answers is no change) and their
        shortest TTL. Raises (aiodns.error.DNSError, TimeoutError, OSError) when it cannot."""
        try:
            result = await asyncio.wait_for(
                self.resolver.getaddrinfo(name, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM),
                QUERY_TIMEOUT)
        finally:
            self._forget_cached_answers()
        addresses = sorted({_text(node.addr[0]) for node in result.nodes})
        if not addresses:
            raise OSError(f"no address for {name}")
        ttl = min(node.ttl for node in result.nodes)
        return tuple(addresses), float(ttl)

    def _forget_cached_answers(self) -> None:
        """This class is the cache (it asks again when a TTL ends). c-ares keeps answers too, and
        1.34 (pycares 5) keeps a "no such record" answer (NODATA: a name with no AAAA) for an
        hour, ignoring the zone's negative TTL: an AAAA record added later would go unseen.
        Re-initialising the channel empties that cache (it keeps the configured nameservers);
        done after each answer, as it completes in the background, so that the next question, a
        second or more later, finds it empty."""
        channel = getattr(self._resolver, "_channel", None)
        reinit = getattr(channel, "reinit", None)
        if reinit is not None:
            with contextlib.suppress(Exception):  # a closed channel: nothing to forget
                reinit()

    async def _follow(self, entry: _Name) -> None:
        retry = RETRY_FIRST
        while True:
            try:
                addresses, ttl = await self.resolve(entry.name)
            except Exception as exc:  # noqa: BLE001 - any failure (c-ares's too) keeps the last addresses
                self._failed(entry, exc)
                delay = retry
                retry = min(retry * 2, RETRY_MAX)
            else:
                self._resolved(entry, addresses)
                delay = min(max(ttl, MIN_TTL), MAX_TTL) + _EXPIRY_MARGIN
                retry = RETRY_FIRST
            if not entry.first.done():
                entry.first.set_result(None)
            await asyncio.sleep(delay)

    def _failed(self, entry: _Name, exc: BaseException) -> None:
        if entry.failing:
            return
        entry.failing = True
        reason = _reason(exc)
        if entry.addresses:
            log.error("cannot resolve %s (%s): %s; keeping its last addresses %s until it resolves",
                      entry.name, entry.where, reason, ", ".join(entry.addresses))
        else:
            log.error("cannot resolve %s (%s): %s; the node has no address (not used) until it "
                      "resolves", entry.name, entry.where, reason)

    def _resolved(self, entry: _Name, addresses: tuple[str, ...]) -> None:
        if entry.failing:
            entry.failing = False
            log.warning("%s resolves again: %s", entry.name, ", ".join(addresses))
        if addresses == entry.addresses:
            return
        first = entry.addresses is None
        entry.addresses = addresses
        log.info("%s %s %s", entry.name, "resolves to" if first else "now resolves to",
                 ", ".join(addresses))
        if not first or entry.first.done():
            self.on_change(self.addresses())


def _text(address: str | bytes) -> str:
    return address.decode() if isinstance(address, bytes) else address


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer within {QUERY_TIMEOUT:g} s"
    if isinstance(exc, aiodns.error.DNSError) and len(exc.args) >= 2:
        return str(exc.args[1])
    return str(exc) or type(exc).__name__
