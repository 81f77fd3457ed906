"""Objects: blobs named by their sha256, kept in a directory or on an S3-compatible service."""

from corral.objects.backend import BlobWriter, ObjectBackend, S3Options, open_backend
from corral.objects.names import check_name, parse_sha256

__all__ = ["BlobWriter", "ObjectBackend", "S3Options", "check_name", "open_backend", "parse_sha256"]
