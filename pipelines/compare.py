"""Compare job: model families trained on the same published tiles, a few seeds each, judged
in one report against the MFCC baseline fitted on the same songs in the same run.

Each run is the train job's Ray stage (Ray Train, resumable: a run that already trained its
epochs is not trained again), named ``<family>-seed<seed>-r<recipe>-<ingest version>`` (the
recipe's fingerprint: another recipe is another run); its best model
embeds every song once (Ray Data), which gives the valid and test metrics and the genre
precision@10 of similar songs. The report goes to ``models/compare-<time>/`` (report.json,
report.csv, report.png) and the run with the best *validation* song accuracy is published as
``models/LATEST`` (run `index` to use it).

    python -m pipelines.compare --root URI [--models cnn,crnn,rnn,resnet,musicnn] [--seeds 3] [--epochs N]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from genre_batch.artifacts import IngestVersion
from genre_batch.baseline import baseline_of_ingest
from genre_batch.comparison import Comparison, RunRow, genre_precision_at_k, plot_comparison, vote_song_accuracy
from genre_batch.config import TrainConfig, fingerprint
from genre_batch.entry import positive_int
from genre_batch.errors import ConfigError
from genre_batch.layout import RootLayout
from genre_batch.models import MODEL_REGISTRY, build_model, parameter_count
from genre_batch.storage import join, new_version, publish, upload_file, write_bytes, write_json
from genre_batch.training import finished_run, training_inputs

logger = logging.getLogger(__name__)

FAMILIES = tuple(MODEL_REGISTRY)  # every family, in the registry's order


@dataclass(frozen=True)
class CompareReport:
    comparison: Comparison
    report_dir: str
    seconds: float

    def summary(self) -> str:
        best = self.comparison.best_run()
        return (f"compare {self.comparison.name} on ingest {self.comparison.ingest_version} "
                f"({len(self.comparison.rows)} runs, {self.seconds:.0f}s):\n{self.comparison.table()}\n"
                f"published {best.run} (best validation song accuracy, {best.valid_song_accuracy:.3f}) as "
                f"models/LATEST; run `index` to use it. Report: {self.report_dir}")


def recipe_tag(config: TrainConfig) -> str:
    """Six hex digits of the recipe (every training setting but the seed and where it runs):
    a run of another recipe is another run, never a resumed one."""
    recipe = {k: v for k, v in config.to_dict().items() if k not in ("seed", "num_workers", "use_gpu")}
    return "r" + fingerprint(recipe)[:6]


def compare_run(layout: RootLayout, ingest: IngestVersion, songs: pd.DataFrame, labels: list[str], family: str,
                seed: int, base: TrainConfig) -> RunRow:
    """One family and seed: train it (or find it trained), embed every song with its best model
    once, evaluate from those outputs; ``base.use_gpu`` is decided. With ``base.init`` (a
    pretrain run) the row is ``<family>+<run>``."""
    from pipelines.inference import predict_songs_of
    from pipelines.train import FittedModel, evaluate_run, fit_model

    config = dataclasses.replace(base, seed=seed, model=base.model.as_family(family))
    run = f"{family}-seed{seed}-{recipe_tag(config)}-{ingest.version}"
    started = time.perf_counter()
    finished = finished_run(layout, run, ingest.version, labels, config.epochs)
    fitted = (fit_model(layout, ingest, songs, labels, run, config) if finished is None
              else FittedModel(layout.model_file(run), finished.best_epoch, list(finished.history)))
    pooled = predict_songs_of(songs, layout.ingest_area, fitted.model_uri, ingest.feature_config,
                              use_gpu=bool(config.use_gpu))
    metrics = finished or evaluate_run(
        layout, ingest, songs, labels, run, config, fitted,
        lambda chosen, splits: pooled[pooled["song_id"].isin(chosen["song_id"])].reset_index(drop=True))
    known = pooled.merge(songs[["song_id", "label", "split"]], on="song_id")
    known = known[known["label"].isin(labels)].reset_index(drop=True)
    # Test songs asking for similar songs among every labelled song.
    embeddings = np.stack(known["embedding"].to_numpy()) if len(known) else np.zeros((0, 1), np.float32)
    precision = genre_precision_at_k(embeddings, known["label"].tolist(), np.flatnonzero(known["split"] == "test"))
    parameters = parameter_count(build_model(config.model, len(labels)))
    return RunRow.of(f"{family}+{config.init}" if config.init else family, seed, metrics, precision, parameters,
                     time.perf_counter() - started, vote_song_accuracy(known, labels))


def write_report(layout: RootLayout, comparison: Comparison) -> str:
    """report.json, report.csv and report.png under ``models/<comparison name>/``."""
    directory = layout.model_dir(comparison.name)
    write_json(join(directory, "report.json"), comparison.to_dict())
    write_bytes(join(directory, "report.csv"), comparison.csv().encode("utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "report.png")
        plot_comparison(comparison, local)
        upload_file(local, join(directory, "report.png"))
    return directory


def run_compare(root: str, families: tuple[str, ...] = FAMILIES, seeds: int = 3,
                train_config: TrainConfig = TrainConfig(), address: str | None = None) -> CompareReport:
    from pipelines._ray import ensure_ray, use_gpus

    started = time.perf_counter()
    problem = family_problem(families)
    if problem:
        raise ConfigError(f"--models: {problem}")
    inputs = training_inputs(root)
    layout, ingest, songs, labels = inputs.layout, inputs.ingest, inputs.songs, inputs.labels
    baseline = baseline_of_ingest(ingest, songs, labels)
    logger.info("%s", baseline.summary())
    ensure_ray(address)
    config = dataclasses.replace(train_config, use_gpu=use_gpus(train_config.use_gpu), init="")
    # Every family from scratch, then each pretrain run's family started from it, side by side.
    plan = [(family, "") for family in families] + [(pretrain_family(layout, ingest, run), run) for run in init_runs(train_config)]
    rows = [compare_run(layout, ingest, songs, labels, family, train_config.seed + offset,
                        dataclasses.replace(config, init=init))
            for family, init in plan for offset in range(seeds)]
    comparison = Comparison(f"compare-{new_version()}", ingest.version, tuple(rows), baseline)
    report_dir = write_report(layout, comparison)
    publish(layout.models_area, comparison.best_run().run)
    return CompareReport(comparison, report_dir, time.perf_counter() - started)


def init_runs(config: TrainConfig) -> list[str]:
    """``--init RUN[,RUN...]``: the pretrain runs compare starts a family from."""
    return [run.strip() for run in config.init.split(",") if run.strip()]


def pretrain_family(layout: RootLayout, ingest: IngestVersion, run: str) -> str:
    """The model family of pretrain run ``run`` (checked: a pretrain run of these tiles)."""
    from pipelines.train import pretrain_state

    return str(pretrain_state(layout, run, ingest.feature_config)["model_config"]["name"])


def family_problem(names: tuple[str, ...]) -> str | None:
    """What is wrong with a list of family names (unknown ones, or none at all), or None."""
    unknown = sorted(set(names) - set(MODEL_REGISTRY))
    if unknown or not names:
        return f"unknown families {unknown or '(none given)'}; known: {sorted(MODEL_REGISTRY)}"
    return None


def family_list(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated family names."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    problem = family_problem(names)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipelines.train import add_recipe_arguments

    parser.add_argument("--root", required=True, help="storage root (holds the published ingest)")
    parser.add_argument("--models", type=family_list, default=FAMILIES, help="comma-separated families")
    parser.add_argument("--seeds", type=positive_int, default=3, help="runs per family, seeds --seed, --seed+1, ...")
    add_recipe_arguments(parser)
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local Ray)")


def from_args(args: argparse.Namespace) -> CompareReport:
    from pipelines.train import recipe_from_args

    return run_compare(args.root, args.models, args.seeds, recipe_from_args(args), address=args.address)


def main(argv: list[str] | None = None) -> int:
    from genre_batch.entry import job_main

    return job_main("compare", __doc__, add_arguments, from_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
