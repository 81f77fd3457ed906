"""One upload on its way in: hashed, counted against the cap, and staged as it streams."""

from __future__ import annotations

import hashlib

from corral.errors import HashMismatch, PayloadTooLarge
from corral.objects.backend import BlobWriter, ObjectBackend


class ObjectUpload:
    """Feed it the body chunk by chunk, then `finish`; `abort` if anything goes wrong.

    When the blob is stored already the bytes are only hashed: the uploader still proves it
    has them, and nothing is written twice."""

    def __init__(self, backend: ObjectBackend, sha256: str, max_size: int) -> None:
        self.sha256 = sha256
        self.max_size = max_size
        self.size = 0
        self._hash = hashlib.sha256()
        self.stored = backend.size(sha256) is not None
        self._writer: BlobWriter | None = None if self.stored else backend.writer()

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_size:
            raise PayloadTooLarge(f"an object may be at most {self.max_size} bytes")
        self._hash.update(data)
        if self._writer is not None:
            self._writer.write(data)

    def finish(self) -> int:
        """Check the hash and store the blob under it; the object's size."""
        actual = self._hash.hexdigest()
        if actual != self.sha256:
            self.abort()
            raise HashMismatch(self.sha256, actual)
        if self._writer is not None:
            self._writer.commit(self.sha256)
            self._writer = None
        return self.size

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
