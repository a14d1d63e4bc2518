"""OpenClonk's group files (``.ocd`` definitions, ``.ocf`` scenario folders, ``.ocg`` groups), unpacked.

Why: ``openclonk-data`` ships its objects packed in C4Group files (Debian 12, 8.1-3: ``Objects.ocd``,
``Decoration.ocd``, the scenario folders), and no Python package reads them. The layout below is the public
description of the format (facts only; this is our own code), checked on every group of the package.

Layout:

- The file is a gzip stream whose two magic bytes are changed from ``1f 8b`` to ``1e 8c``; with them put back,
  the standard gzip decoder gives the group's bytes. (A plain ``1f 8b`` stream is taken as well.)
- A group: a 204-byte header, then one 316-byte entry per member, then the members' bytes. The header is
  scrambled: every byte XOR 237, then bytes 0 and 2 of each 3-byte triple swapped. Unscrambled, it starts with
  ``RedWolf Design GrpFolder`` (a 28-byte field), then int32 version 1, int32 version 2 and int32 entry count
  (little-endian), then reserved bytes.
- An entry (not scrambled): the member's name (260 bytes, NUL-terminated), int32 packed, int32 child group,
  int32 size, int32 reserved, int32 offset (from the end of the entry table), then reserved bytes. A child
  group's bytes are a nested group, header and all (not compressed again).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Iterator

__all__ = ["read_group", "iter_group", "extract_group", "GROUP_ID"]

GROUP_ID = b"RedWolf Design GrpFolder"
HEADER_SIZE, ENTRY_SIZE = 204, 316
#: nesting deeper than this is refused (a corrupt file could point a child at its parent)
MAX_DEPTH = 32


def _unscramble(header: bytes) -> bytes:
    out = bytearray(header)
    for i in range(0, len(out) - 2, 3):
        out[i], out[i + 2] = out[i + 2], out[i]
    return bytes(b ^ 237 for b in out)


def read_group(path: Path | str | bytes) -> bytes:
    """The unpacked bytes of a group file (its gzip layer removed)."""
    data = path if isinstance(path, (bytes, bytearray)) else Path(path).read_bytes()
    if data[:2] in (b"\x1e\x8c", b"\x1f\x8b"):
        try:
            return gzip.decompress(b"\x1f\x8b" + bytes(data[2:]))
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"broken C4Group compression ({exc})") from exc
    return bytes(data)


def iter_group(data: bytes, prefix: str = "", start: int = 0, depth: int = 0) -> Iterator[tuple[str, bytes]]:
    """(path inside the group, bytes) of every file, child groups walked in place (``A.ocd/B.ocd/x.mesh``).
    Raises ValueError for a header without the group id, an entry past the end, or a bad name."""
    if depth > MAX_DEPTH:
        raise ValueError("C4Group nested too deep")
    if start + HEADER_SIZE > len(data):
        raise ValueError(f"truncated C4Group: header at byte {start} of {len(data)}")
    header = _unscramble(data[start:start + HEADER_SIZE])
    if not header.startswith(GROUP_ID):
        raise ValueError(f"not a C4Group (header at byte {start} lacks {GROUP_ID.decode()!r})")
    (count,) = struct.unpack_from("<i", header, 36)
    base = start + HEADER_SIZE + ENTRY_SIZE * count
    if count < 0 or base > len(data):
        raise ValueError(f"truncated C4Group: {count} entries at byte {start} of {len(data)}")
    for k in range(count):
        entry = data[start + HEADER_SIZE + ENTRY_SIZE * k:start + HEADER_SIZE + ENTRY_SIZE * (k + 1)]
        name = entry[:260].split(b"\0", 1)[0].decode("latin-1")
        _packed, child, size, _, offset = struct.unpack_from("<5i", entry, 260)
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(f"bad C4Group member name {name!r}")
        at = base + offset
        if size < 0 or offset < 0 or at + size > len(data):
            raise ValueError(f"truncated C4Group: member {prefix + name!r} ends past byte {len(data)}")
        if child:
            yield from iter_group(data, f"{prefix}{name}/", at, depth + 1)
        else:
            yield prefix + name, data[at:at + size]


def extract_group(path: Path | str, target: Path | str, keep: tuple[str, ...] = ()) -> int:
    """Write a group file's members under ``target`` (child groups as folders); ``keep``: only names with
    these (lower-case) endings. Returns how many files were written."""
    target = Path(target)
    written = 0
    for name, blob in iter_group(read_group(path)):
        if keep and not name.lower().endswith(keep):
            continue
        out = target / name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(blob)
        written += 1
    return written
