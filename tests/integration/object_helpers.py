"""Helpers for object tests: what a backend holds, looked at from outside it."""

from __future__ import annotations

import hashlib
import os

from corral.objects.backend import ObjectBackend
from corral.objects.directory import DirectoryBackend
from corral.objects.s3 import S3Backend


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored(backend: ObjectBackend) -> list[str]:
    """Every file or key the backend holds, staging included, and every multipart upload
    still open: what must not change when an upload is refused."""
    if isinstance(backend, DirectoryBackend):
        return sorted(
            os.path.relpath(os.path.join(d, f), backend.root)
            for d, _, files in os.walk(backend.root)
            for f in files
        )
    assert isinstance(backend, S3Backend)
    keys = []
    pages = backend.client.get_paginator("list_objects_v2").paginate(
        Bucket=backend.bucket, Prefix=backend.prefix
    )
    for page in pages:
        keys += [item["Key"][len(backend.prefix) :] for item in page.get("Contents", [])]
    uploads = backend.client.list_multipart_uploads(Bucket=backend.bucket, Prefix=backend.prefix)
    keys += [f"upload:{u['Key']}" for u in uploads.get("Uploads", [])]
    return sorted(keys)
