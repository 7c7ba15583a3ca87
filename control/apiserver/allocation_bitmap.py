"""Allocation bitmaps: which service cluster IPs and node ports are taken, as Kubernetes'
RangeAllocation objects hold it (one bitmap per range, stored under a key of its own).

- :class:`IPRange` and :class:`PortRange` map an address or port to an offset in the bitmap
  and back. An IPv4 range leaves out its network and broadcast addresses; an IPv6 range its
  subnet-router address.
- :class:`Bitmap` is one range's state: take a given offset, take the next free one, give
  one back. Dynamic choices start at a random offset in the upper part of the range and
  wrap around, so that the lower part (the "static band", Kubernetes' sizes) stays free for
  values users ask for by name, such as the cluster DNS's 10.96.0.10.
- :func:`encode` / :func:`decode` turn a bitmap into the stored bytes (JSON with the range
  and the zlib-compressed bits: a /12 of 2^20 addresses is a few hundred bytes when sparse).

Pure: no I/O, no shared state; the caller serialises writes (compare-and-swap in the store).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import re
import zlib
from dataclasses import dataclass, field

# Kubernetes refuses service ranges larger than 2^20 addresses (a /12 for IPv4).
MAX_RANGE_BITS = 20
_NOT_FULL = re.compile(rb"[^\xff]")


class RangeFull(Exception):
    """No free value is left in the range."""


class NotInRange(Exception):
    """The value is outside the range (or a reserved address of it)."""


class AlreadyAllocated(Exception):
    """The value is taken already."""


@dataclass(frozen=True)
class IPRange:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network

    @staticmethod
    def parse(text: str) -> IPRange:
        """A service CIDR: one family (dual-stack ranges are not supported), at most 2^20
        addresses, at least 8 (ValueError saying which)."""
        if "," in text:
            raise ValueError(f"{text!r}: dual-stack service ranges are not supported; "
                             "give one CIDR")
        try:
            net = ipaddress.ip_network(text.strip(), strict=True)
        except ValueError as e:
            raise ValueError(f"{text!r} is not a valid CIDR: {e}") from None
        host_bits = net.max_prefixlen - net.prefixlen
        if host_bits > MAX_RANGE_BITS:
            raise ValueError(f"{text!r} is too large: a service range holds at most "
                             f"2^{MAX_RANGE_BITS} addresses (/{net.max_prefixlen - MAX_RANGE_BITS})")
        if host_bits < 3:
            raise ValueError(f"{text!r} is too small: a service range needs at least 8 "
                             "addresses")
        return IPRange(net)

    @property
    def family(self) -> str:
        return f"IPv{self.network.version}"

    @property
    def size(self) -> int:
        # IPv4: no network or broadcast address; IPv6: no subnet-router address
        return self.network.num_addresses - (2 if self.network.version == 4 else 1)

    def offset(self, ip: str) -> int:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise NotInRange(f"{ip!r} is not an IP address") from None
        if addr.version != self.network.version or addr not in self.network:
            raise NotInRange(ip)
        off = int(addr) - int(self.network.network_address) - 1
        if not 0 <= off < self.size:
            raise NotInRange(ip)
        return off

    def value(self, offset: int) -> str:
        return str(self.network.network_address + offset + 1)

    def static_band(self) -> int:
        """Offsets below this are chosen dynamically only when the rest is full."""
        return min(max(16, self.size // 16), 256)

    def __str__(self) -> str:
        return str(self.network)


@dataclass(frozen=True)
class PortRange:
    base: int
    last: int

    @staticmethod
    def parse(text: str) -> PortRange:
        """``30000-32767`` (or a single port): ValueError saying what is wrong."""
        lo, sep, hi = text.strip().partition("-")
        try:
            base = int(lo)
            last = int(hi) if sep else base
        except ValueError:
            raise ValueError(f"{text!r} is not a port range like 30000-32767") from None
        if not 1 <= base <= last <= 65535:
            raise ValueError(f"{text!r} is not a port range within 1-65535")
        return PortRange(base, last)

    @property
    def size(self) -> int:
        return self.last - self.base + 1

    def offset(self, port: int) -> int:
        if not self.base <= port <= self.last:
            raise NotInRange(str(port))
        return port - self.base

    def value(self, offset: int) -> int:
        return self.base + offset

    def static_band(self) -> int:
        return min(max(16, self.size // 32), 128)

    def __str__(self) -> str:
        return f"{self.base}-{self.last}"


@dataclass
class Bitmap:
    """One range's taken offsets. ``range_text`` names the range it was made for, so that a
    changed flag is noticed when the stored bitmap is read."""

    range_text: str
    size: int
    bits: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        want = (self.size + 7) // 8
        if len(self.bits) < want:
            self.bits.extend(bytes(want - len(self.bits)))
        del self.bits[want:]

    def has(self, offset: int) -> bool:
        return 0 <= offset < self.size and bool(self.bits[offset >> 3] & (1 << (offset & 7)))

    def take(self, offset: int) -> None:
        if self.has(offset):
            raise AlreadyAllocated(str(offset))
        self.bits[offset >> 3] |= 1 << (offset & 7)

    def release(self, offset: int) -> None:
        if 0 <= offset < self.size:
            self.bits[offset >> 3] &= ~(1 << (offset & 7)) & 0xFF

    def count(self) -> int:
        return sum(bin(b).count("1") for b in self.bits)

    def offsets(self) -> list[int]:
        out: list[int] = []
        for byte_index, b in enumerate(self.bits):
            if b:
                out.extend(byte_index * 8 + j for j in range(8) if b >> j & 1)
        return out

    def _first_free(self, start: int, stop: int) -> int | None:
        """The lowest free offset in [start, stop)."""
        i = start
        while i < stop:
            byte = i >> 3
            if self.bits[byte] == 0xFF:
                # skip taken bytes at C speed: a full range is 128 KiB of them
                m = _NOT_FULL.search(self.bits, byte)
                if m is None:
                    return None
                i = m.start() * 8
                continue
            if not self.has(i):
                return i
            i += 1
        return None

    def take_next(self, static_band: int, rng: random.Random | None = None) -> int:
        """Take a free offset: from a random point of the upper part, wrapping round, then
        the lower (static) part. RangeFull when none is left."""
        r = rng or random
        band = min(static_band, self.size)
        upper = self.size - band
        order: list[tuple[int, int]] = []
        if upper > 0:
            start = band + r.randrange(upper)
            order += [(start, self.size), (band, start)]
        order.append((0, band))
        for lo, hi in order:
            off = self._first_free(lo, hi)
            if off is not None:
                self.take(off)
                return off
        raise RangeFull()


def encode(bm: Bitmap) -> bytes:
    return json.dumps({
        "range": bm.range_text,
        "size": bm.size,
        "data": base64.b64encode(zlib.compress(bytes(bm.bits))).decode(),
    }, sort_keys=True).encode()


def decode(data: bytes) -> Bitmap:
    doc = json.loads(data)
    return Bitmap(str(doc["range"]), int(doc["size"]),
                  bytearray(zlib.decompress(base64.b64decode(doc["data"]))))


__all__ = ["AlreadyAllocated", "Bitmap", "IPRange", "NotInRange", "PortRange", "RangeFull",
           "decode", "encode"]
