"""CRC-64 as OSS computes it for ``x-oss-hash-crc64ecma``: ECMA-182 polynomial, reflected, all-ones
register and final XOR (CRC-64/XZ). Parameters are oss2's (``oss2.utils.Crc64``):
poly 0x142F0E1EBA9EA3693, initCrc=0 (crcmod folds xorOut into it), rev=True, xorOut=2**64-1.
Check value: crc64(b"123456789") == 0x995DC9BBDF1939FA.
"""

from __future__ import annotations

import crcmod

_POLY = 0x142F0E1EBA9EA3693
_XOROUT = 0xFFFFFFFFFFFFFFFF


class Crc64:
    """``Crc64(previous)`` continues a CRC: the CRC of ``a + b`` is ``Crc64(crc64(a))`` updated with ``b``
    (AppendObject reports the whole object's CRC after each append)."""

    def __init__(self, initial: int = 0) -> None:
        self._crc = crcmod.Crc(_POLY, initCrc=0, rev=True, xorOut=_XOROUT)
        self._crc.crcValue = initial

    def update(self, data: bytes) -> None:
        self._crc.update(data)

    @property
    def value(self) -> int:
        return self._crc.crcValue


def crc64(data: bytes) -> int:
    c = Crc64()
    c.update(data)
    return c.value
