"""`genre-batch verify`: every file of the published ingest and index versions against the size
and SHA-256 their manifests list (readers check sizes when they open a version; this reads
every byte)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from genre_batch.artifacts import published_index, published_ingest
from genre_batch.errors import DamagedFileError, NotPublishedError
from genre_batch.storage import FileSum, check_sum


@dataclass(frozen=True)
class FileCheck:
    area: str  # ingest or index
    version: str
    uri: str
    status: str  # ok, damaged, missing, unverified (no checksum listed)
    detail: str = ""


@dataclass(frozen=True)
class VerifyReport:
    checks: tuple[FileCheck, ...]
    unpublished: tuple[str, ...]  # areas with nothing published

    @property
    def problems(self) -> list[FileCheck]:
        return [check for check in self.checks if check.status in ("damaged", "missing")]

    def to_dict(self) -> dict[str, Any]:
        return {"checks": [asdict(check) for check in self.checks], "unpublished": list(self.unpublished),
                "problems": len(self.problems)}

    def summary(self) -> str:
        counts = {status: sum(1 for c in self.checks if c.status == status)
                  for status in ("ok", "damaged", "missing", "unverified")}
        lines = [f"{c.status}: {c.uri}{' (' + c.detail + ')' if c.detail else ''}"
                 for c in self.checks if c.status != "ok"]
        lines += [f"nothing published in {area}/" for area in self.unpublished]
        lines.append(", ".join(f"{n} {status}" for status, n in counts.items()) + f" of {len(self.checks)} files")
        return "\n".join(lines)


def check_file(area: str, version: str, uri: str, expected: FileSum | None) -> FileCheck:
    if expected is None:
        return FileCheck(area, version, uri, "unverified", "its manifest lists no checksum")
    try:
        check_sum(uri, expected)
    except FileNotFoundError as exc:  # MissingObjectError is one
        return FileCheck(area, version, uri, "missing", str(exc))
    except DamagedFileError as exc:  # other storage errors (the store failed, not the file) propagate
        return FileCheck(area, version, uri, "damaged", str(exc).split(" is damaged: ", 1)[-1])
    return FileCheck(area, version, uri, "ok")


def verify_root(root: str, workers: int = 8) -> VerifyReport:
    """Check every file of the versions that ``ingest/LATEST`` and ``index/LATEST`` name."""
    jobs: list[tuple[str, str, str, FileSum | None]] = []
    unreadable: list[FileCheck] = []
    unpublished = []
    for area, load in (("ingest", published_ingest), ("index", published_index)):
        try:
            version = load(root)
        except NotPublishedError:
            unpublished.append(area)
            continue
        except DamagedFileError as exc:  # its manifest, or a table it opens, is damaged
            uri, _, detail = str(exc).partition(" is damaged: ")
            unreadable.append(FileCheck(area, "?", uri, "damaged", detail))
            continue
        sums: Mapping[str, FileSum] = version.manifest.checksums or {}
        jobs += [(area, version.version, uri, sums.get(name)) for name, uri in version.files().items()]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        checks = tuple(unreadable) + tuple(pool.map(lambda job: check_file(*job), jobs))
    return VerifyReport(checks, tuple(unpublished))
