"""Objects on an S3-compatible service (SeaweedFS, MinIO, AWS S3), streamed in parts."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
from botocore.client import Config
from botocore.exceptions import BotoCoreError, ClientError

from corral.errors import ConfigError
from corral.objects.backend import CHUNK, S3Options

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

# S3 takes parts of 5 MiB at least (but the last); 8 MiB keeps an upload's memory small
PART = 8 * 1024 * 1024


class S3Backend:
    """`PREFIX/ab/abcd…` per blob in one bucket. An upload goes to a key of its own under
    `PREFIX/tmp/` (in parts when big) and is copied to its name once its hash is checked."""

    def __init__(self, bucket: str, prefix: str, options: S3Options) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.endpoint = options.endpoint
        self.client: S3Client = boto3.client(
            "s3",
            endpoint_url=options.endpoint or None,
            aws_access_key_id=options.access_key or None,
            aws_secret_access_key=options.secret_key or None,
            region_name=options.region or None,
            config=Config(
                # path-style works with every S3-compatible service; virtual hosts need DNS
                s3={"addressing_style": "path"},
                retries={"max_attempts": 4, "mode": "standard"},
                max_pool_connections=32,
            ),
        )

    def check(self) -> None:
        """Fail at start, clearly, when the bucket cannot be reached."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise ConfigError([f"objects: cannot use bucket {self.describe()}: {exc}"]) from None

    def describe(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    def key(self, sha256: str) -> str:
        return f"{self.prefix}{sha256[:2]}/{sha256}"

    def size(self, sha256: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(sha256))
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise
        return int(head["ContentLength"])

    def writer(self) -> S3Writer:
        return S3Writer(self)

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        if end is not None and end <= start:
            return
        extra: dict[str, Any] = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        body = self.client.get_object(Bucket=self.bucket, Key=self.key(sha256), **extra)["Body"]
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()


class S3Writer:
    def __init__(self, backend: S3Backend) -> None:
        self.backend = backend
        self.client = backend.client
        self.temp = f"{backend.prefix}tmp/{secrets.token_hex(16)}"
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.completed = False  # the temporary key holds the whole upload
        self.done = False

    def write(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= PART:
            self._send_part(bytes(self.buffer[:PART]))
            del self.buffer[:PART]

    def _send_part(self, data: bytes) -> None:
        bucket = self.backend.bucket
        if self.upload_id is None:
            created = self.client.create_multipart_upload(Bucket=bucket, Key=self.temp)
            self.upload_id = created["UploadId"]
        number = len(self.parts) + 1
        sent = self.client.upload_part(
            Bucket=bucket, Key=self.temp, UploadId=self.upload_id, PartNumber=number, Body=data
        )
        self.parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    def commit(self, sha256: str) -> None:
        bucket, key = self.backend.bucket, self.backend.key(sha256)
        if self.backend.size(sha256) is not None:  # the same bytes, stored before
            self.abort()
            return
        if self.upload_id is None:
            # small: it never left this process, so it goes straight to its name
            self.client.put_object(Bucket=bucket, Key=key, Body=bytes(self.buffer))
            self.buffer.clear()
            self.done = True
            return
        if self.buffer:
            self._send_part(bytes(self.buffer))
            self.buffer.clear()
        self.client.complete_multipart_upload(
            Bucket=bucket,
            Key=self.temp,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},  # type: ignore[typeddict-item]
        )
        self.upload_id = None
        self.completed = True
        # a managed copy: in parts itself when the object is over what one copy may take
        self.client.copy({"Bucket": bucket, "Key": self.temp}, bucket, key)
        self.abort()

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        self.buffer.clear()
        with contextlib.suppress(ClientError, BotoCoreError):
            if self.upload_id is not None:
                self.client.abort_multipart_upload(
                    Bucket=self.backend.bucket, Key=self.temp, UploadId=self.upload_id
                )
            elif self.completed:
                self.client.delete_object(Bucket=self.backend.bucket, Key=self.temp)


def _status(exc: ClientError) -> int:
    meta = exc.response.get("ResponseMetadata", {})
    return int(meta.get("HTTPStatusCode", 0))
