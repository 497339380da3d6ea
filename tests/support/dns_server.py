"""A tiny authoritative DNS server for the tests: UDP on loopback, a port the OS chooses, answers
encoded by dnslib. Tests point the gateway's ``resolvers`` at it and change its records while the
gateway runs (a new address, a short TTL, a failing server)."""
from __future__ import annotations

import socket
import threading
from dataclasses import dataclass

from dnslib import AAAA, QTYPE, RCODE, RR, SOA, A, DNSRecord

NEGATIVE_TTL = 1


@dataclass
class Record:
    address: str
    ttl: int = 300


class DnsServer:
    """``with DnsServer() as dns:``; ``dns.address`` ("127.0.0.1:port") goes into the gateway's
    ``resolvers``. ``set(name, [addresses], ttl)`` replaces a name's records (IPv4 answer A
    queries, IPv6 AAAA ones); an unknown name is NXDOMAIN. ``failing = True`` answers every
    query SERVFAIL (a broken server) until set back."""

    def __init__(self) -> None:
        self.records: dict[str, list[Record]] = {}
        self.failing = False
        self.queries: list[tuple[str, str]] = []  # (name, type) of every query received
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.running = False

    def set(self, name: str, addresses: list[str], ttl: int = 300) -> None:
        with self.lock:
            self.records[name.lower().rstrip(".")] = [Record(a, ttl) for a in addresses]

    def queries_for(self, name: str) -> int:
        with self.lock:
            return sum(1 for n, _ in self.queries if n == name)

    def __enter__(self) -> DnsServer:
        self.running = True
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        # wakes the blocking recvfrom so the thread can end
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"", ("127.0.0.1", self.port))
        self.thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while self.running:
            data, peer = self.sock.recvfrom(4096)
            if not self.running:
                return
            try:
                request = DNSRecord.parse(data)
            except Exception:  # noqa: BLE001 - garbage is dropped, as a server would
                continue
            self.sock.sendto(self._answer(request).pack(), peer)

    def _answer(self, request: DNSRecord) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).lower().rstrip(".")
        qtype = QTYPE[request.q.qtype]
        with self.lock:
            self.queries.append((qname, qtype))
            records = self.records.get(qname)
            failing = self.failing
        if failing:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self._soa(request))
            return reply
        for record in records:
            v6 = ":" in record.address
            if qtype == "A" and not v6:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(record.address), ttl=record.ttl))
            elif qtype == "AAAA" and v6:
                reply.add_answer(RR(request.q.qname, QTYPE.AAAA, rdata=AAAA(record.address),
                                    ttl=record.ttl))
        if not reply.rr:  # NODATA
            reply.add_auth(self._soa(request))
        return reply

    def _soa(self, request: DNSRecord) -> RR:
        """What an authoritative server sends with a negative answer (RFC 2308): resolvers cache
        the "no such record" for the SOA's minimum, 1 s here, so tests see a new record soon."""
        zone = ".".join(str(request.q.qname).rstrip(".").split(".")[-1:]) + "."
        return RR(zone, QTYPE.SOA, ttl=1,
                  rdata=SOA("ns." + zone, "admin." + zone, (1, 60, 60, 60, NEGATIVE_TTL)))
