"""Storage by URI (`/path`, `file://`, `s3://bucket/prefix`) through fsspec, with atomic publishing.

Nothing here assumes a local disk. Outputs are written under a fresh version name that no
reader knows about, then published by writing a small ``LATEST`` pointer object: a reader
that follows the pointer always sees a complete version (object stores have no rename, but
a single small PUT is atomic).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import hashlib
import os
import re
import secrets
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, Iterable, Iterator

import fsspec
import pyarrow.fs as pafs
from fsspec.implementations.local import LocalFileSystem

from genre_batch.errors import DamagedFileError, GenreBatchError, NotPublishedError, StorageError

logger = logging.getLogger(__name__)

LATEST = "LATEST"


class MissingObjectError(StorageError, FileNotFoundError):
    """A file or object that should exist does not; the message names its URI."""


def normalise_uri(uri: str) -> str:
    """Absolute local paths for local URIs, unchanged remote URIs, no trailing slash."""
    uri = str(uri)
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if "://" not in uri:
        uri = os.path.abspath(os.path.expanduser(uri))
    return uri.rstrip("/") or "/"


def is_local(uri: str) -> bool:
    return "://" not in normalise_uri(uri)


def join(uri: str, *parts: str) -> str:
    out = normalise_uri(uri)
    for part in parts:
        out = out.rstrip("/") + "/" + part.strip("/")
    return out


def relative_to(uri: str, root: str) -> str:
    uri, root = normalise_uri(uri), normalise_uri(root)
    if not uri.startswith(root.rstrip("/") + "/"):
        raise ValueError(f"{uri} is not under {root}")
    return uri[len(root.rstrip("/")) + 1 :]


# What an S3 call may cost before it fails (documented in the README): each attempt waits at
# most CONNECT_TIMEOUT_S for a connection and READ_TIMEOUT_S for an answer; botocore makes up to
# AWS_MAX_ATTEMPTS attempts (default 5) with exponential back-off capped at 20 s, so a store that
# is down fails a call within ~40 s (a refused connection: within ~15 s).
CONNECT_TIMEOUT_S = float(os.environ.get("GENRE_BATCH_S3_CONNECT_TIMEOUT", "5"))
READ_TIMEOUT_S = float(os.environ.get("GENRE_BATCH_S3_READ_TIMEOUT", "60"))
DEFAULT_ATTEMPTS = 5

_UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ClientConnectorError",
                "ServerDisconnectedError", "ProxyConnectionError")
_THROTTLED = ("SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
              "reduce your request rate")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = getattr(current, "cause", None) or current.__cause__ or current.__context__


def store_failure(exc: BaseException) -> str | None:
    """What went wrong with the store, in a few words, when ``exc`` (or what it wraps) is a
    failure of the store itself rather than of one object: unreachable, timed out, no such
    bucket, access denied, throttled, no credentials. None for anything else."""
    for current in _chain(exc):
        name, text = type(current).__name__, str(current)
        if name in _UNREACHABLE or isinstance(current, ConnectionRefusedError):
            return f"the store is unreachable ({text})"
        if name in ("ReadTimeoutError", "TimeoutError", "FSTimeoutError") or isinstance(current, TimeoutError):
            return f"the store did not answer within {READ_TIMEOUT_S:g} s ({text or name})"
        if name in ("NoCredentialsError", "PartialCredentialsError"):
            return "no credentials for the store (set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or a role)"
        if "NoSuchBucket" in text or "bucket does not exist" in text:
            return "no such bucket"
        if any(marker in text or marker == name for marker in _THROTTLED):
            return f"the store kept throttling after {s3_retries()['max_attempts']} attempts ({text})"
        if isinstance(current, PermissionError) or "AccessDenied" in text or "Access Denied" in text:
            return f"access denied ({text})"
    return None


@contextmanager
def storage_errors(action: str, uri: str) -> Iterator[None]:
    """Turn what a filesystem raises into one named error that says what failed where:
    ``MissingObjectError`` for a missing object, ``StorageError`` for the rest (unreachable,
    timed out, access denied, no such bucket, retries exhausted: ``store_failure``). Never a
    credential: only the URI and the store's own message."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:  # botocore's errors are not OSErrors; pyarrow's and s3fs's are
        failure = store_failure(exc)
        if failure is not None:
            raise StorageError(f"could not {action} {uri}: {failure}") from exc
        if isinstance(exc, FileNotFoundError):
            raise MissingObjectError(f"{uri} does not exist ({exc})") from exc
        if isinstance(exc, OSError):
            raise StorageError(f"could not {action} {uri}: {exc}") from exc
        raise


def s3_retries() -> dict[str, Any]:
    """Retries of every S3 call: by default botocore's adaptive mode with ``DEFAULT_ATTEMPTS``
    attempts (exponential back-off with jitter on throttling, 5xx and connection errors, plus
    client-side rate limiting while the store keeps throttling). The standard AWS variables
    ``AWS_RETRY_MODE`` and ``AWS_MAX_ATTEMPTS`` override it, as for any AWS client."""
    return {
        "max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", str(DEFAULT_ATTEMPTS))),
        "mode": os.environ.get("AWS_RETRY_MODE", "adaptive"),
    }


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """fsspec filesystem and the path within it.

    s3fs reads credentials from the standard AWS chain (environment, profile, instance role)
    and ``AWS_ENDPOINT_URL`` / ``AWS_DEFAULT_REGION`` for S3-compatible stores (MinIO, Ceph, R2);
    nothing here sees or logs a credential.
    """
    uri = normalise_uri(uri)
    options = ({"config_kwargs": {"retries": s3_retries(), "connect_timeout": CONNECT_TIMEOUT_S,
                                  "read_timeout": READ_TIMEOUT_S}}
               if uri.startswith(("s3://", "s3a://")) else {})
    fs, path = fsspec.core.url_to_fs(uri, **options)
    return fs, path


def pyarrow_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem (for Ray Data and pyarrow.parquet) and the path within it."""
    fs, path = filesystem(uri)
    if isinstance(fs, LocalFileSystem):
        return pafs.LocalFileSystem(), path
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    with storage_errors("look up", uri):
        return bool(fs.exists(path))


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    with storage_errors("read", uri), fs.open(path, "rb") as handle:
        return handle.read()


# Bytes per read when a file is hashed as a stream.
HASH_BLOCK_BYTES = 8 * 2**20


def sum_of_stream(handle: IO[bytes]) -> "FileSum":
    """Size and SHA-256 of what an open binary file holds from here on, read a block at a time
    (an hours-long file never sits in memory)."""
    digest, size = hashlib.sha256(), 0
    while block := handle.read(HASH_BLOCK_BYTES):
        digest.update(block)
        size += len(block)
    return FileSum(size, digest.hexdigest())


def sha256_of(uri: str) -> str:
    """The sha256 of an object's bytes, read a block at a time."""
    fs, path = filesystem(uri)
    with storage_errors("read", uri), fs.open(path, "rb") as handle:
        return sum_of_stream(handle).sha256


def read_text(uri: str, what: str) -> str:
    """A text file a user made (a labels CSV, a listening history): UTF-8, a BOM allowed.

    Another encoding is a named error, not a guess: decoded as Latin-1, a path with an accent
    would silently name no file."""
    data = read_bytes(uri)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GenreBatchError(
            f"{what} {uri} is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}): save it as UTF-8"
        ) from None


def write_bytes(uri: str, data: bytes) -> None:
    """Write one object whole. Locally via a temporary file + rename so no reader sees half."""
    fs, path = filesystem(uri)
    with storage_errors("write", uri):
        if isinstance(fs, LocalFileSystem):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; outputs are shared
                os.replace(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        else:
            with fs.open(path, "wb") as handle:
                handle.write(data)


def read_json(uri: str) -> Any:
    data = read_bytes(uri)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedFileError(f"{uri} is damaged: not JSON ({exc}; {len(data)} bytes)") from None


@dataclass(frozen=True)
class FileSum:
    """A published file's size and SHA-256, as its version's manifest lists them."""

    size: int  # bytes
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> "FileSum":
        return cls(len(data), hashlib.sha256(data).hexdigest())

    @classmethod
    def of_local(cls, path: str) -> "FileSum":
        with open(path, "rb") as handle:
            return sum_of_stream(handle)

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.size, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: Any) -> "FileSum":
        return cls(int(data["bytes"]), str(data["sha256"]))


def check_size(uri: str, expected: FileSum) -> None:
    """The cheap check at open: the object's size is the one its manifest lists."""
    fs, path = filesystem(uri)
    with storage_errors("look up", uri):
        size = int(fs.size(path))
    if size != expected.size:
        raise DamagedFileError(f"{uri} is damaged: {size} bytes, its manifest lists {expected.size}")


def check_sum(uri: str, expected: FileSum) -> None:
    """The full check: size and SHA-256 (reads the whole object, a block at a time)."""
    check_size(uri, expected)
    found = sha256_of(uri)
    if found != expected.sha256:
        raise DamagedFileError(f"{uri} is damaged: its SHA-256 is {found[:12]}..., its manifest lists "
                               f"{expected.sha256[:12]}...")


def write_json(uri: str, payload: Any) -> None:
    write_bytes(uri, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"))


def upload_file(local_path: str, uri: str) -> None:
    fs, path = filesystem(uri)
    if isinstance(fs, LocalFileSystem):
        with open(local_path, "rb") as handle:
            write_bytes(uri, handle.read())
        return
    with storage_errors("upload to", uri):
        fs.put_file(local_path, path)


def download_file(uri: str, local_path: str) -> None:
    fs, path = filesystem(uri)
    os.makedirs(os.path.dirname(os.path.abspath(local_path)), exist_ok=True)
    with storage_errors("download", uri):
        fs.get_file(path, local_path)


def list_prefix(uri: str) -> list[str]:
    """Names directly under a prefix (empty if it does not exist)."""
    fs, path = filesystem(uri)
    with storage_errors("list", uri):
        if not fs.exists(path):
            return []
        return sorted(os.path.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))


@dataclass(frozen=True)
class FileInfo:
    uri: str
    size: int
    # Modification time (ISO) or the object store's ETag: either changes when the file does.
    mtime: str
    etag: str


def walk_files(uri: str) -> Iterable[FileInfo]:
    """Every file under a URI, recursively, with the facts that tell when it changed."""
    fs, path = filesystem(uri)
    with storage_errors("list", uri):
        if not fs.exists(path):
            raise StorageError(f"catalogue {uri} does not exist")
        if fs.isfile(path):
            raise StorageError(f"catalogue {uri} is a file: give the folder (or prefix) that holds the audio")
        found = _find_following_links(fs, path, {os.path.realpath(path)})
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    for file_path, info in sorted(found.items()):
        if info.get("type") != "file":
            continue
        mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or ""
        if isinstance(mtime, (int, float)):
            mtime = dt.datetime.fromtimestamp(mtime, tz=dt.timezone.utc).isoformat()
        uri_out = file_path if protocol in ("file", "local") else f"{protocol}://{file_path}"
        yield FileInfo(
            uri=uri_out,
            size=int(info.get("size") or 0),
            mtime=str(mtime),
            etag=str(info.get("ETag") or info.get("etag") or "").strip('"'),
        )


def _find_following_links(fs: Any, path: str, walked: set[str]) -> dict[str, dict[str, Any]]:
    """``fs.find`` that follows symbolic links, which it lists as type "other" and would drop.

    Music folders on disk are often made of links (a library sorted by genre, pointing at the
    files where they live). A link to a file counts as that file (the target's size and
    mtime, so the nightly sees the target change); a link to a folder is walked under the
    link's name, once per real folder (a link back up the tree is not a loop); a broken
    link, or a loop of links, is kept as an empty file, so that ingest records it as
    unreadable with its reason.
    Only local file systems have links: on object stores this is ``fs.find``.
    """
    found: dict[str, dict[str, Any]] = {}
    for file_path, info in fs.find(path, detail=True).items():
        if info.get("type") == "file" or not info.get("islink"):
            found[file_path] = info
            continue
        try:
            target = fs.info(file_path)  # follows the link
        except OSError:  # broken, or a loop of links (ELOOP): ingest records why it cannot read it
            found[file_path] = {**info, "type": "file", "size": 0}
            continue
        if target.get("type") == "file":
            found[file_path] = {**target, "name": file_path}
        elif target.get("type") == "directory" and os.path.realpath(file_path) not in walked:
            walked.add(os.path.realpath(file_path))
            found.update(_find_following_links(fs, file_path, walked))
    return found


def check_writable(uri: str) -> None:
    """Fail fast, before any work, when outputs cannot be written under ``uri``
    (no such bucket, access denied): one probe object, written and removed."""
    probe = join(uri, f".write-probe-{secrets.token_hex(4)}")
    write_bytes(probe, b"")
    remove(probe)


def remove(uri: str, recursive: bool = False) -> None:
    fs, path = filesystem(uri)
    with storage_errors("delete", uri):
        fs.rm(path, recursive=recursive)


def new_version() -> str:
    """Sortable, unique version name: UTC time plus a random suffix."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


# Names of versions (new_version): sortable by the time their run began.
TIMED_VERSION = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")


def publish(area_uri: str, version: str) -> None:
    """Point ``<area>/LATEST`` at a version that is already completely written.

    Compared before swapped: when ``LATEST`` already names a newer version (one whose run
    began later, and which published while this run worked), it is left as it is and this
    is a ``StorageError``: two concurrent runs cannot replace the newer one's version with
    the older one's. Run names (``models/LATEST``) carry no time and are not compared.
    """
    check_version_name(version, f"{area_uri}/{LATEST}")
    current = _current_latest(area_uri)
    # By the time stamps alone: two versions begun within the same second are not ordered.
    if (current and TIMED_VERSION.fullmatch(current) and TIMED_VERSION.fullmatch(version)
            and current[:16] > version[:16]):
        raise StorageError(f"{area_uri}/{LATEST} already names {current}, newer than {version} (another run "
                           f"published while this one worked); left as it is, {version} is not published")
    write_bytes(join(area_uri, LATEST), (version + "\n").encode())
    logger.info("published %s/%s", area_uri, version)


# What LATEST may name: a version or run name, never a path (``../x``, ``a/b``) that would lead
# a reader outside the area.
VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")


def check_version_name(name: str, where: str) -> str:
    if not VERSION_NAME.fullmatch(name) or ".." in name:
        raise StorageError(f"{where}: {name[:80]!r} is not a version or run name (letters, digits and . _ + -, "
                           "no '..', at most 200 characters); refused, as it could lead outside the root")
    return name


def _current_latest(area_uri: str) -> str | None:
    try:
        return read_bytes(join(area_uri, LATEST)).decode("utf-8", errors="replace").strip()
    except FileNotFoundError:
        return None


def latest_version(area_uri: str, what: str, hint: str = "") -> str:
    uri = join(area_uri, LATEST)
    try:
        name = read_bytes(uri).decode("utf-8", errors="replace").strip()
    except FileNotFoundError:
        check_bucket(area_uri)
        raise NotPublishedError(f"no {what} published yet ({uri} is missing){'; ' + hint if hint else ''}") from None
    return check_version_name(name, uri)


def check_bucket(uri: str) -> None:
    """On object storage, a missing bucket is a ``StorageError`` saying so (not "nothing
    published yet", which would send a user looking for the wrong fix)."""
    if is_local(uri):
        return
    fs, path = filesystem(uri)
    bucket = path.split("/", 1)[0]
    with storage_errors("look up", f"{uri.split('://', 1)[0]}://{bucket}"):
        found = fs.exists(bucket)
    if not found:
        raise StorageError(f"no such bucket: {uri.split('://', 1)[0]}://{bucket} (for {uri})")
