"""A bounds-checked reader over the bytes of a binary model file.

Why: our own binary readers (SuperTuxKart's SPM, Ogre's ``.mesh``) must refuse a truncated or corrupt file
with a clear error instead of an IndexError or a silent short read; one cursor gives them that check.
"""

from __future__ import annotations

import struct

__all__ = ["ByteCursor"]


class ByteCursor:
    """Reads in one byte order (``"<"`` or ``">"``); a read past the end is a ValueError naming ``what``
    (the kind of file) and the offset."""

    def __init__(self, data: bytes, order: str = "<", what: str = "file") -> None:
        self.data, self.order, self.what, self.offset = data, order, what, 0

    def truncated(self, detail: str) -> ValueError:
        """The error for a file that ends before ``detail`` says it should."""
        return ValueError(f"truncated {self.what}: {detail}")

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if size < 0 or end > len(self.data):
            raise self.truncated(f"{size} bytes wanted at byte {self.offset} of {len(self.data)}")
        chunk = self.data[self.offset:end]
        self.offset = end
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(self.order + fmt, self.take(struct.calcsize(self.order + fmt)))

    def at_end(self) -> bool:
        return self.offset >= len(self.data)
