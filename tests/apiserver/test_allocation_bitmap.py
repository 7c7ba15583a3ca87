"""Allocation bitmaps: range parsing, offsets, static band, encoding (table tests)."""

from __future__ import annotations

import random

import pytest

from control.apiserver import allocation_bitmap as ab


@pytest.mark.parametrize(("text", "size", "first", "last"), [
    ("10.96.0.0/12", 2**20 - 2, "10.96.0.1", "10.111.255.254"),
    ("10.0.0.0/29", 6, "10.0.0.1", "10.0.0.6"),
    ("fd00::/108", 2**20 - 1, "fd00::1", "fd00::f:ffff"),
])
def test_ip_range(text: str, size: int, first: str, last: str) -> None:
    r = ab.IPRange.parse(text)
    assert r.size == size
    assert r.value(0) == first and r.value(size - 1) == last
    assert r.offset(first) == 0 and r.offset(last) == size - 1


@pytest.mark.parametrize(("text", "message"), [
    ("10.0.0.0/8", "too large"),
    ("10.0.0.0/30", "too small"),
    ("10.0.0.1/24", "not a valid CIDR"),
    ("10.96.0.0/12,fd00::/108", "dual-stack"),
    ("nonsense", "not a valid CIDR"),
])
def test_ip_range_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ab.IPRange.parse(text)


@pytest.mark.parametrize("ip", ["10.96.0.0", "10.111.255.255", "10.112.0.1", "fd00::1", "x"])
def test_ip_outside_range_or_reserved(ip: str) -> None:
    with pytest.raises(ab.NotInRange):
        ab.IPRange.parse("10.96.0.0/12").offset(ip)


@pytest.mark.parametrize(("text", "ok"), [
    ("30000-32767", True), ("8080", True), ("0-10", False), ("200-100", False),
    ("a-b", False), ("30000-70000", False),
])
def test_port_range(text: str, ok: bool) -> None:
    if ok:
        r = ab.PortRange.parse(text)
        assert r.value(r.offset(r.last)) == r.last
    else:
        with pytest.raises(ValueError):
            ab.PortRange.parse(text)


@pytest.mark.parametrize(("cidr", "band"), [
    ("10.96.0.0/12", 256), ("10.0.0.0/24", 16), ("10.0.0.0/20", 255),
])
def test_static_band_sizes(cidr: str, band: int) -> None:
    assert ab.IPRange.parse(cidr).static_band() == band


def test_dynamic_choices_keep_out_of_the_static_band_until_the_rest_is_full() -> None:
    r = ab.IPRange.parse("10.0.0.0/24")  # 254 addresses, band 16
    bm = ab.Bitmap(str(r), r.size)
    rng = random.Random(7)
    got = [bm.take_next(r.static_band(), rng) for _ in range(r.size - 16)]
    assert sorted(got) == list(range(16, r.size))
    rest = [bm.take_next(r.static_band(), rng) for _ in range(16)]
    assert sorted(rest) == list(range(16))
    with pytest.raises(ab.RangeFull):
        bm.take_next(r.static_band(), rng)
    bm.release(200)
    assert bm.take_next(r.static_band(), rng) == 200


def test_take_release_and_round_trip() -> None:
    r = ab.IPRange.parse("10.96.0.0/12")
    bm = ab.Bitmap(str(r), r.size)
    bm.take(9)
    with pytest.raises(ab.AlreadyAllocated):
        bm.take(9)
    bm.take(r.size - 1)
    data = ab.encode(bm)
    assert len(data) < 2048  # sparse: compressed
    back = ab.decode(data)
    assert back.range_text == "10.96.0.0/12" and back.offsets() == [9, r.size - 1]
    back.release(9)
    assert back.offsets() == [r.size - 1] and back.count() == 1


def test_first_free_skips_full_bytes() -> None:
    bm = ab.Bitmap("x", 100)
    for i in range(90):
        bm.take(i)
    assert bm.take_next(0, random.Random(1)) == 90
