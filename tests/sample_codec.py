"""Codecs for the tests (``--codec sample_codec:Base64Codec``): reversible, keyed, no secrets.

``Base64Codec`` writes ``b64:`` and the base64 of the text XORed with a key byte, so that a
test can tell that nothing is stored in plain text (not even as plain base64) and that another
key does not decode it.
"""

from __future__ import annotations

import base64


class Base64Codec:
    """A toy codec (XOR with ``key``, then base64): what a Fernet codec does, without a key
    service, for tests."""

    def __init__(self, key: int = 0x5A) -> None:
        self.key = key

    def __repr__(self) -> str:
        return f"Base64Codec(key={self.key:#x})"

    def encode(self, text: str) -> str:
        """``b64:`` and the base64 of the XORed UTF-8 bytes."""
        raw = bytes(b ^ self.key for b in text.encode())
        return "b64:" + base64.b64encode(raw).decode()

    def decode(self, text: str) -> str:
        """The text that :meth:`encode` was given; ValueError for text it did not write."""
        if not text.startswith("b64:"):
            raise ValueError("not written by Base64Codec")
        raw = base64.b64decode(text[4:], validate=True)
        return bytes(b ^ self.key for b in raw).decode()


def other_key() -> Base64Codec:
    """A codec with another key (it cannot decode what Base64Codec() wrote)."""
    return Base64Codec(0x33)
