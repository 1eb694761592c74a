"""What a nightly run did: ``runs/<run_id>.json`` and a row of the runs table
(``runs/<run_id>.parquet``; read ``runs/*.parquet`` as one table)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass, field

from genre_batch import schemas
from genre_batch.layout import RootLayout
from genre_batch.storage import join, new_version, write_json
from genre_batch.tables import write_rows


@dataclass
class NightlyReport:
    run_id: str
    started: str
    catalogue: str
    counts: dict[str, int]
    tiles_written: int = 0
    ingest_version: str | None = None
    model_run: str | None = None
    index_version: str | None = None
    published: list[str] = field(default_factory=list)
    retrain: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    pruned: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, catalogue: str) -> "NightlyReport":
        return cls(run_id=new_version(), started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                   catalogue=catalogue, counts={})

    def summary(self) -> str:
        c = self.counts
        what = ", ".join(self.published) if self.published else "nothing (no change)"
        return (
            f"nightly {self.run_id}: {c.get('new', 0)} new, {c.get('changed', 0)} changed, "
            f"{c.get('removed', 0)} removed, {c.get('failed', 0)} failed, {c.get('unchanged', 0)} unchanged; "
            f"{self.tiles_written} tiles written; published {what}; "
            f"ingest {self.ingest_version}, model {self.model_run}, index {self.index_version}; "
            f"{self.seconds.get('total', 0):.1f}s"
            + (f"; retrain: {self.retrain}" if self.retrain else "")
        )


class Stopwatch:
    """Wall time per stage of a run: ``lap(stage)`` books the time since the previous lap."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._started = self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._last, 3)
        self._last = now

    def total(self) -> float:
        return round(time.perf_counter() - self._started, 3)


def write_report(layout: RootLayout, report: NightlyReport) -> None:
    runs = join(layout.root, "runs")
    write_json(join(runs, f"{report.run_id}.json"), dataclasses.asdict(report))
    c = report.counts
    row = {
        "run_id": report.run_id,
        "started": report.started,
        "catalogue": report.catalogue,
        **{name: c.get(name, 0) for name in ("new", "changed", "removed", "failed", "retried", "unchanged")},
        "tiles_written": report.tiles_written,
        "ingest_version": report.ingest_version,
        "model_run": report.model_run,
        "index_version": report.index_version,
        "published": report.published,
        "retrain": report.retrain,
        "seconds": list(report.seconds.items()),
    }
    write_rows([row], schemas.RUNS, join(runs, f"{report.run_id}.parquet"), {"kind": "nightly"})
