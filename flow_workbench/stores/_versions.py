"""Versions for compare-and-set, and the content tokens that stand in for them in Go files.

Our files store a version that every save increments. Go files store none, so a Go file's
version is a token computed from its bytes (``content_token``): a load takes the token of the
bytes it read, a save compares it with the token of the bytes on disk and, in the Go layout,
remembers the token of the bytes it wrote. An unchanged file always gives the same token, so a
single editor never conflicts with itself; any rewrite (by Go, or another editor of ours) gives
another token, so a save based on the old bytes raises ``VersionConflictError`` instead of
overwriting them. Tokens live in ``[2**62, 2**62 + 2**61)``, far above any real version, and
are compared for equality only (they have no order); the first save of such a state in one of
our layouts writes version 1.
"""

from __future__ import annotations

import hashlib
from typing import Final

#: Smallest content token; versions of our files stay far below it.
CONTENT_TOKEN_MIN: Final = 1 << 62
_TOKEN_BITS: Final = (1 << 61) - 1


def content_token(raw: bytes | bytearray | memoryview) -> int:
    """The compare-and-set token of a Go file's bytes (a 61-bit BLAKE2b digest, offset)."""
    digest = hashlib.blake2b(raw, digest_size=8).digest()
    return CONTENT_TOKEN_MIN | (int.from_bytes(digest, "little") & _TOKEN_BITS)


def is_content_token(version: int) -> bool:
    return version >= CONTENT_TOKEN_MIN


def next_version(version: int) -> int:
    """The version a save of a state at ``version`` writes in our layouts (1 after a token)."""
    return 1 if is_content_token(version) else version + 1


def is_stale(mine: int, stored: int) -> bool:
    """Whether a state at version ``mine`` may not replace the stored one at ``stored``.

    Versions only grow, so an older one is stale; a token matches only itself (the bytes it
    was taken from are still the ones on disk), in either position.
    """
    if is_content_token(mine) or is_content_token(stored):
        return mine != stored
    return mine < stored
