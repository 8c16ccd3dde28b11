"""The parts of strict Ed25519 verification that OpenSSL does not do.

`cryptography` (OpenSSL) checks the signature equation and `S < L`. Strict verification,
as `mandate-core` does it (ed25519-dalek's `verify_strict`), also refuses public keys that
are not points or are of small order, and `R` values that are non-canonical or of small
order. These checks run here, in pure Python, on the 32-byte encodings.
"""

from __future__ import annotations

from functools import lru_cache

P = 2**255 - 19
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _decompress(encoding: bytes) -> tuple[int, int] | None:
    """The point an encoding names, as ed25519-dalek decompresses it (the y coordinate is
    read modulo p), or None when it is not on the curve."""
    if len(encoding) != 32:
        return None
    n = int.from_bytes(encoding, "little")
    sign = n >> 255
    y = (n & ((1 << 255) - 1)) % P
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    # x = sqrt(u / v), computed as u v^3 (u v^7)^((p-5)/8)
    x = (u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P)) % P
    vx2 = (v * x * x) % P
    if vx2 == u:
        pass
    elif vx2 == (-u) % P:
        x = (x * SQRT_M1) % P
    else:
        return None
    if (x & 1) != sign:
        x = (-x) % P
    return (x, y)


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = (D * x1 * x2 * y1 * y2) % P
    x3 = ((x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P)) % P
    y3 = ((y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P)) % P
    return (x3, y3)


def _is_small_order(point: tuple[int, int]) -> bool:
    q = point
    for _ in range(3):  # [8]P
        q = _add(q, q)
    return q == (0, 1)


@lru_cache(maxsize=65536)
def usable_key(encoding: bytes) -> bool:
    """Whether a public key decodes to a point of the curve that is not of small order."""
    point = _decompress(encoding)
    return point is not None and not _is_small_order(point)


@lru_cache(maxsize=1)
def _small_order_encodings() -> frozenset[bytes]:
    points = set()
    # The eight points of order dividing 8, found from the curve's torsion: every point
    # whose [8]-multiple is the identity among those with small y.
    candidates = [
        (0, 1),
        (0, P - 1),
    ]
    # x^2 = -1 solutions with y = 0 (order 4), and the order-8 points.
    candidates += [(SQRT_M1, 0), (P - SQRT_M1, 0)]
    y8 = 0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7
    for y in (y8, P - y8):
        pt = _decompress(y.to_bytes(32, "little"))
        if pt is not None:
            candidates += [pt, ((-pt[0]) % P, pt[1])]
    for x, y in candidates:
        if _is_small_order((x, y)):
            enc = y | ((x & 1) << 255)
            points.add(enc.to_bytes(32, "little"))
            flipped = y | ((1 - (x & 1)) << 255)
            points.add(flipped.to_bytes(32, "little"))
    return frozenset(points)


def r_is_canonical_large_order(signature: bytes) -> bool:
    """The checks on a signature's `R` that strict verification adds: its y is canonical
    (below p) and it is not one of the small-order points."""
    r = signature[:32]
    non_canonical = (
        r[31] & 0x7F == 0x7F and all(b == 0xFF for b in r[1:31]) and r[0] >= 0xED
    )
    return not non_canonical and r not in _small_order_encodings()
