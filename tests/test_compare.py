"""`genre-batch compare`: two families, one seed, one epoch each on a small catalogue, through
Ray Train and Ray Data as a user runs it: one report (JSON, CSV, PNG) with the MFCC baseline of
the same run, the best run on validation published, and a rerun that trains nothing again."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from genre_batch.cli import main
from genre_batch.commands import write_demo_catalogue
from genre_batch.layout import RootLayout
from genre_batch.manifests import RunMetrics
from genre_batch.storage import latest_version

pytestmark = pytest.mark.slow

ARGS = ["--models", "cnn,rnn", "--seeds", "1", "--epochs", "1", "--batch-size", "16"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory, ray_local):
    base = tmp_path_factory.mktemp("compare")
    catalogue, root = base / "catalogue", str(base / "root")
    summary = write_demo_catalogue(catalogue, n_songs=18, seed=5, min_duration_s=12.0, max_duration_s=13.0)
    assert main(["ingest", "--catalogue", str(catalogue), "--root", root, "--labels", summary.labels_csv]) == 0
    return {"root": root, "code": main(["compare", "--root", root, *ARGS])}


def report_dir(root: str) -> str:
    models = RootLayout(root).models_area
    names = sorted(p.name for p in Path(models).iterdir() if p.name.startswith("compare-"))
    return f"{models}/{names[-1]}"


def test_compare_reports_every_run_beside_the_baseline(compared, capsys):
    assert compared["code"] == 0
    report = json.loads(open(f"{report_dir(compared['root'])}/report.json").read())
    assert [(run["family"], run["seed"]) for run in report["runs"]] == [("cnn", 0), ("rnn", 0)]
    for run in report["runs"]:
        assert 0.0 <= run["test_song_accuracy"] <= 1.0 and run["parameters"] > 0 and run["tiles_per_s"] > 0
        assert 0.0 <= run["test_genre_precision_at_10"] <= 1.0
        metrics = RunMetrics.read(RootLayout(compared["root"]).model_metrics(run["run"]))
        assert metrics.test.song_accuracy == pytest.approx(run["test_song_accuracy"], nan_ok=True)
    assert set(report["summary"]) == {"cnn", "rnn"} and report["summary"]["cnn"]["seeds"] == 1
    assert 0.0 <= report["baseline"]["test_song_accuracy"] <= 1.0
    rows = list(csv.DictReader(io.StringIO(open(f"{report_dir(compared['root'])}/report.csv").read())))
    assert [row["family"] for row in rows] == ["cnn", "rnn", "mfcc-baseline"]
    png = open(f"{report_dir(compared['root'])}/report.png", "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_best_run_on_validation_is_published(compared):
    report = json.loads(open(f"{report_dir(compared['root'])}/report.json").read())
    best = max(report["runs"], key=lambda run: run["valid_song_accuracy"] if run["valid_song_accuracy"] is not None else -1)
    assert report["best_run"] == best["run"]
    assert latest_version(RootLayout(compared["root"]).models_area, "model") == best["run"]


def test_a_rerun_trains_nothing_again(compared, capsys, caplog):
    first = json.loads(open(f"{report_dir(compared['root'])}/report.json").read())
    with caplog.at_level("INFO"):
        assert main(["compare", "--root", compared["root"], *ARGS]) == 0
    out = capsys.readouterr().out
    assert "mfcc-baseline" in out and "cnn" in out and "published" in out
    assert sum("already trained its 1 epochs" in r.getMessage() for r in caplog.records) == 2
    second = json.loads(open(f"{report_dir(compared['root'])}/report.json").read())
    assert [r["test_song_accuracy"] for r in second["runs"]] == [r["test_song_accuracy"] for r in first["runs"]]


def test_unknown_families_are_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["compare", "--root", "r", "--models", "cnn,transformer"])
    assert exited.value.code == 2 and "unknown families ['transformer']" in capsys.readouterr().err
