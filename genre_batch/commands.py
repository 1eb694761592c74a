"""The subcommands of `genre-batch`: (help, add_arguments, run) each.

Jobs delegate to the same ``pipelines.<job>`` modules that ``ray job submit`` runs, so the
CLI and the cluster entry points cannot drift apart.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any, Callable

from genre_batch.entry import fraction, positive_int
from genre_batch.errors import ConfigError
from genre_batch.metrics import format_metric

if TYPE_CHECKING:
    import multiprocessing.context
    import os
    from collections.abc import Iterator, Sequence

    from genre_batch.synth import CatalogueSummary, Job

logger = logging.getLogger(__name__)

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], Any]]


COMMANDS: dict[str, Command] = {}


def _job(module_name: str, help_text: str) -> Command:
    """A subcommand that is exactly `python -m pipelines.<job>`: same flags, same code."""
    import importlib

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        importlib.import_module(f"pipelines.{module_name}").add_arguments(parser)

    def run(args: argparse.Namespace) -> None:
        print(importlib.import_module(f"pipelines.{module_name}").from_args(args).summary())

    return help_text, add_arguments, run


COMMANDS.update(
    {
        "ingest": _job("ingest", "decode a catalogue into tiles + songs + errors tables (Ray Data)"),
        "train": _job("train", "train a genre model (a family of genre_batch/models/, crnn by default) on the "
                               "published tiles (Ray Train)"),
        "pretrain": _job("pretrain", "self-supervised training on every song's tiles, labelled or not (Ray Train)"),
        "index": _job("index", "embed every song, decide genres, build and publish the Annoy index"),
        "nightly": _job("nightly", "bring tiles, predictions and the index up to date with a grown catalogue"),
        "serve": _job("serve", "the web page and HTTP API over the published index, on Ray Serve"),
        "compare": _job("compare", "train model families over seeds, report them against the MFCC baseline, "
                                   "publish the best on validation"),
    }
)


# ------------------------------------------------------------------ answers (no Ray)
def _emit(payload: Any, as_json: bool, text: str) -> None:
    import json

    print(json.dumps(payload, indent=2, default=_jsonable) if as_json else text)


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and value != value:
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _evaluate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="storage root with a published index")
    parser.add_argument("-k", type=positive_int, default=10, help="neighbours for genre precision@k")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a summary")


def _evaluate(args: argparse.Namespace) -> None:
    from genre_batch.answers import PublishedIndex
    from genre_batch.nulls import json_safe
    from genre_batch.storage import join, write_json

    index = PublishedIndex(args.root)
    report = index.evaluate(k=args.k)
    _emit(report, args.json, format_evaluation(report, args.k))
    # Kept beside the version (additive: its published files are never modified), and only
    # when the root is writable: an analyst with read-only credentials still gets the numbers.
    target = join(index.version.layout.evaluation_dir(index.version.version), "metrics.json")
    try:
        write_json(target, json_safe(report))
    except OSError as exc:  # StorageError is one
        logger.warning("metrics not saved to %s: %s", target, exc)


def format_evaluation(report: dict[str, Any], k: int) -> str:
    lines = [f"index {report['index_version']} (model {report['model_run']})"]
    if "song_decision" in report:
        from genre_batch.decision import SongDecision

        lines.append(f"  {SongDecision.from_dict(report['song_decision']).describe()}")
    if "genres" in report:  # a pretrain run's index: no genres, only the neighbours
        lines.append(f"  {report['genres']}")
        lines += [f"  {split}: genre precision@{k} of similar songs, by the songs' own labels: "
                  f"{format_metric(report[split][f'genre_precision_at_{k}'])}" for split in ("valid", "test")]
    for split in ("valid", "test") if "genres" not in report else ():
        part = report[split]
        rule = part["unknown_rule"]
        # Labelled songs of a genre the model never trained on are not scored; say they exist.
        apart = part.get("songs_with_unknown_genre", 0)
        not_scored = f" (+{apart} of genres not in training, not scored)" if apart else ""
        lines.append(
            f"  {split}: {part['songs']} songs{not_scored}, "
            f"song accuracy {format_metric(part['song_accuracy'])}, "
            f"tile accuracy {format_metric(part['tile_accuracy'])}, "
            f"genre precision@{k} {format_metric(part[f'genre_precision_at_{k}'])}"
        )
        lines.append(
            f"    unknown rule (threshold {format_metric(rule['threshold'])}): coverage {format_metric(rule['coverage'])}, "
            f"accuracy on answered songs {format_metric(rule['accuracy_accepted'])} "
            f"(all songs {format_metric(rule['accuracy_all'])})"
        )
        per_genre = ", ".join(f"{g} {format_metric(v)}" for g, v in part["per_genre"].items())
        lines.append(f"    per genre: {per_genre}")
    lines.append(f"  Annoy recall@{k} vs exact cosine search: {format_metric(report[f'annoy_recall_at_{k}'])}")
    similarity = report.get("similarity")
    if similarity:
        def spread(p: dict[str, float]) -> str:
            return "/".join(format_metric(p[q]) for q in ("p05", "p50", "p95"))

        lines.append(f"  cosine of random song pairs (5th/50th/95th percentile): {spread(similarity['cosine_of_random_pairs'])}"
                     + (f" centred on the catalogue's mean; {spread(similarity['uncentred_cosine_of_random_pairs'])} "
                        "uncentred" if similarity["centred"] else " (not centred)"))
    return "\n".join(lines)


def _classify_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="storage root with a published index")
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (paths or URIs)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _classify(args: argparse.Namespace) -> int:
    import sys

    from genre_batch.answers import PublishedIndex, format_decision
    from genre_batch.errors import GenreBatchError
    from genre_batch.replies import classify_reply

    index = PublishedIndex(args.root)
    results, failed = [], 0
    for uri in args.files:
        try:
            answer = index.analyse_audio(uri)
        except (GenreBatchError, OSError) as exc:  # one bad file must not hide the others' answers
            failed += 1
            print(f"error: {uri}: {exc}", file=sys.stderr)
            results.append({"file": uri, "error": str(exc)})
            continue
        results.append(classify_reply(index, uri, answer))
        if not args.json:
            print(f"{uri}: {format_decision(answer.decision)}")
    if args.json:
        _emit(results, True, "")
    return 1 if failed else 0


def _similar_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="storage root with a published index")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--song", help="a song of the index: its id (songs / predictions table) or its path "
                                        "(full, or relative to the catalogue)")
    query.add_argument("--audio", help="an audio file (path or URI), in the catalogue or not")
    parser.add_argument("-k", type=positive_int, default=10, help="number of neighbours")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _similar(args: argparse.Namespace) -> None:
    from genre_batch.answers import PublishedIndex, format_decision
    from genre_batch.replies import similar_audio_reply, similar_song_reply

    index = PublishedIndex(args.root)
    if args.song:
        song_id = index.song_id_of(args.song)
        neighbours = index.similar_to_song(song_id, args.k)
        header = f"songs like {song_id} ({index.by_song.loc[song_id, 'path']}):"
        payload = similar_song_reply(index, song_id, neighbours)
    else:
        answer, neighbours = index.similar_to_audio(args.audio, args.k)
        header = f"songs like {args.audio} [{format_decision(answer.decision)}]:"
        payload = similar_audio_reply(index, args.audio, answer, neighbours)
    lines = [header] + [_song_line(n.similarity, n.song_id, n.genre, n.genre_source, n.path) for n in neighbours]
    _emit(payload, args.json, "\n".join(lines))


def _song_line(score: float, song_id: str, genre: str, genre_source: str, path: str) -> str:
    """One answer song: score, id, genre (marked when it is the index's prediction), path."""
    return f"  {score:6.3f}  {song_id}  {genre:<16} {'' if genre_source == 'label' else '(predicted) '}{path}"


def _shares(mix: dict[str, float]) -> str:
    """A genre mix as "rock 60%, jazz 40%", biggest first."""
    return ", ".join(f"{g} {w:.0%}" for g, w in sorted(mix.items(), key=lambda gw: (-gw[1], gw[0])))


def _playlist_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="storage root with a published index")
    parser.add_argument(
        "--history", metavar="FILE",
        help="listening history (path or URI): one song id or path per play and line, "
             "or a CSV with a song_id or path column and an optional plays column; "
             "paths are full, or relative to the catalogue",
    )
    parser.add_argument("--song", action="append", default=[], metavar="ID",
                        help="a song id (or path) of the history, one play; repeat it; adds to --history")
    parser.add_argument("-n", type=positive_int, default=20, help="songs in the playlist")
    parser.add_argument(
        "--variety", type=fraction, default=0.3,
        help="0: the history's genre mix and its nearest songs; 1: every genre equally, songs spread apart",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def _playlist(args: argparse.Namespace) -> None:
    import sys

    from genre_batch.answers import PublishedIndex
    from genre_batch.errors import GenreBatchError
    from genre_batch.playlist import parse_history
    from genre_batch.replies import playlist_reply
    from genre_batch.storage import read_text

    history = [(song, 1.0) for song in args.song]
    if args.history:
        history += parse_history(read_text(args.history, "listening history"), source=args.history)
    if not history:
        raise GenreBatchError("playlist: give a listening history, --history FILE and/or --song ID")
    index = PublishedIndex(args.root)
    playlist = index.playlist(history, n=args.n, variety=args.variety)
    if playlist.skipped:
        shown = ", ".join(playlist.skipped[:10]) + (" ..." if len(playlist.skipped) > 10 else "")
        print(f"warning: {len(playlist.skipped)} history entries are not in the index, skipped: {shown}", file=sys.stderr)

    lines = [
        f"playlist of {len(playlist.entries)} songs for {playlist.history_plays:g} plays of "
        f"{playlist.history_songs} songs, variety {playlist.variety:.2f} (index {index.version.version})",
        f"  history mix: {_shares(playlist.history_mix)}",
        f"  target mix:  {_shares(playlist.target_mix)}",
        f"  playlist:    {', '.join(f'{g} {c}' for g, c in sorted(playlist.places.items(), key=lambda gc: (-gc[1], gc[0])))}",
    ] + [
        f"  {i:3d}{_song_line(e.relevance, e.song_id, e.genre, e.genre_source, e.path)}"
        for i, e in enumerate(playlist.entries, 1)
    ]
    if not playlist.entries:
        lines.append("  (no songs to choose from: every song of the index is in the history or of unknown genre)")
    _emit(playlist_reply(index, playlist), args.json, "\n".join(lines))


def _genres_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="storage root with a published index")
    parser.add_argument("--unlabelled", action="store_true", help="only the songs without a label")
    parser.add_argument("--out", metavar="CSV",
                        help="write the CSV here (path or URI) instead of to stdout; it is a labels CSV that "
                             "`ingest --labels` reads back")


def _genres(args: argparse.Namespace) -> None:
    import sys

    from genre_batch.answers import PublishedIndex, filled_genres
    from genre_batch.storage import write_bytes

    index = PublishedIndex(args.root)
    table = filled_genres(index.predictions, unlabelled_only=args.unlabelled)
    text = table.to_csv(index=False, lineterminator="\n")
    counts = table["source"].value_counts()
    where = args.out or "stdout"
    if args.out:
        write_bytes(args.out, text.encode("utf-8"))
    else:
        sys.stdout.write(text)
    print(f"genres of {len(table)} songs (index {index.version.version}): {counts.get('label', 0)} labelled, "
          f"{counts.get('predicted', 0)} predicted, {counts.get('unknown', 0)} unknown -> {where}", file=sys.stderr)


def _tag_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="storage root with a published index")
    parser.add_argument("--write", action="store_true",
                        help="write the tags (default: a dry run that lists what would be written and skipped)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--only-missing", dest="replace_all", action="store_false", default=False,
                       help="write only files with no genre tag (the default)")
    which.add_argument("--all", dest="replace_all", action="store_true",
                       help="also replace genre tags that disagree with the index")
    parser.add_argument("--min-confidence", type=fraction, default=None,
                        help="write a predicted genre only at this confidence or more (default: the index's "
                             "unknown threshold)")
    parser.add_argument("--genre-map", metavar="CSV",
                        help="model_genre,library_genre per line: the spelling your library uses")
    parser.add_argument("--undo", metavar="RUN", help="restore the tags that run RUN replaced (tags/RUN.parquet)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _tag(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from genre_batch.answers import PublishedIndex
    from genre_batch.layout import RootLayout
    from genre_batch.storage import read_text
    from genre_batch.tagging import (
        TagOptions, TagReport, parse_genre_map, plan_tags, undo_tags, write_tags,
    )

    layout = RootLayout(args.root)
    if args.undo:
        undone = undo_tags(layout, args.undo)
        _emit(undone.to_dict(), args.json, _tag_text(undone, "restored"))
        return 0
    index = PublishedIndex(args.root)
    genre_map = parse_genre_map(read_text(args.genre_map, "genre map"), args.genre_map) if args.genre_map else {}
    options = TagOptions(replace_all=args.replace_all, min_confidence=args.min_confidence, genre_map=genre_map)
    plan = plan_tags(index.predictions, index.catalogue_songs, index.threshold, options)
    if not args.write:
        rows = [asdict(row) for row in plan]
        writes = sum(row.action == "write" for row in plan)
        lines = [_plan_line(row) for row in plan] + [
            f"dry run: {writes} files would be tagged, {len(plan) - writes} skipped; nothing was touched (add --write)"]
        _emit({"dry_run": True, "files": rows}, args.json, "\n".join(lines))
        return 0
    report: TagReport = write_tags(layout, plan, index.version.manifest.model_run, index.version.version)
    _emit(report.to_dict(), args.json, _tag_text(report, "tagged"))
    return 0


def _plan_line(row: Any) -> str:
    confidence = "" if row.confidence is None else f" {row.confidence:.2f}"
    return (f"{'would write' if row.action == 'write' else 'skip':<11} {row.relative_path}: "
            f"{row.current or '(no genre)'} -> {row.new or '-'} [{row.source}{confidence}] {row.reason}")


def _tag_text(report: Any, verb: str) -> str:
    lines = [f"{verb} {row['relative_path']}: {row['old_genre'] or '(no genre)'} -> {row['new_genre'] or '(no genre)'}"
             for row in report.written]
    lines += [f"skipped {row.relative_path}: {row.reason}" for row in report.skipped if row.source != "none"
              or verb == "restored"]
    lines.append(f"{report.run}: {verb} {len(report.written)} files, skipped {len(report.skipped)}; log {report.log_uri}"
                 + (f"; undo with `genre-batch tag --root ... --undo {report.run}`" if verb == "tagged" else ""))
    return "\n".join(lines)


def _baseline_args(parser: argparse.ArgumentParser) -> None:
    from genre_batch.baseline import L2, N_MFCC

    parser.add_argument("--root", required=True, help="storage root with a published ingest")
    parser.add_argument("--n-mfcc", type=positive_int, default=N_MFCC, help="MFCCs per frame")
    parser.add_argument("--l2", type=float, default=L2, help="L2 penalty of the logistic regression")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _baseline(args: argparse.Namespace) -> None:
    import dataclasses

    from genre_batch.baseline import baseline_of_ingest
    from genre_batch.training import training_inputs

    inputs = training_inputs(args.root, writable=False)  # an analyst may only read the root
    report = baseline_of_ingest(inputs.ingest, inputs.songs, inputs.labels, n_mfcc=args.n_mfcc, l2=args.l2)
    _emit({"ingest_version": inputs.ingest.version, **dataclasses.asdict(report)}, args.json,
          f"ingest {inputs.ingest.version}: {report.summary()}")


def _verify_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="storage root whose published versions to check")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a summary")


def _verify(args: argparse.Namespace) -> int:
    from genre_batch.verify import verify_root

    report = verify_root(args.root)
    _emit(report.to_dict(), args.json, report.summary())
    if report.problems:
        print(f"error: {len(report.problems)} damaged or missing files under {args.root}: "
              + ", ".join(check.uri for check in report.problems[:5]), file=sys.stderr)
        return 1
    return 0


def _gc_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="storage root to clean")
    parser.add_argument("--grace", type=float, default=24.0, metavar="HOURS",
                        help="leave versions begun less than this long ago (a job may still be writing them)")
    parser.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")


def _gc(args: argparse.Namespace) -> None:
    import datetime as dt

    from genre_batch.layout import RootLayout
    from genre_batch.retention import collect_garbage

    if args.grace < 0:
        raise ConfigError(f"--grace must be at least 0 hours, got {args.grace}")
    removed = collect_garbage(RootLayout(args.root), dt.timedelta(hours=args.grace), dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print("\n".join([f"{verb} {uri}" for uri in removed]
                    + [f"gc: {verb} {len(removed)} unpublished versions of dead runs under {args.root}"]))


COMMANDS.update(
    {
        "gc": ("remove the unpublished versions that dead runs left (never a published or used one)", _gc_args, _gc),
        "verify": ("check every file of the published versions against their manifests' sizes and SHA-256",
                   _verify_args, _verify),
        "evaluate": ("metrics of the published model and index", _evaluate_args, _evaluate),
        "baseline": ("the yardstick: MFCC statistics + logistic regression on the published tiles' labelled songs",
                     _baseline_args, _baseline),
        "classify": ("genre of audio files that are not in the catalogue", _classify_args, _classify),
        "similar": ("the songs nearest to a song of the catalogue or to an audio file", _similar_args, _similar),
        "playlist": ("a playlist from a listening history: its genre mix, near songs, a variety knob",
                     _playlist_args, _playlist),
        "genres": ("every song's genre as a labels CSV: its label, else the model's genre, else none (unknown)",
                   _genres_args, _genres),
        "tag": ("write genres into the files' own tags (dry run unless --write), with provenance and --undo",
                _tag_args, _tag),
    }
)


# ------------------------------------------------------------------ demo catalogue and the whole chain
# The synth library writes a catalogue's songs one after another; the commands below write
# them in a process pool, with a progress bar. The library (numpy, soundfile, ...) and the
# pool are imported when a command runs, not when the CLI starts.
def write_demo_catalogue(
    out_dir: str | os.PathLike[str],
    n_songs: int = 120,
    seed: int = 0,
    *,
    processes: int | None = None,
    **options: Any,
) -> CatalogueSummary:
    """``genre_batch.synth.write_catalogue`` with the songs written in a process pool.

    ``processes`` defaults to one per CPU, and is never more than there are songs (one
    writes them in this process); ``options`` are ``write_catalogue``'s keyword options. The
    files are the same bytes as with the library's sequential default, only sooner.
    """
    from genre_batch.synth import write_catalogue

    def write_songs(write: Callable[[Job], str], jobs: Sequence[Job]) -> Iterator[str]:
        return _write_in_pool(write, jobs, processes)

    return write_catalogue(out_dir, n_songs, seed, write_songs=write_songs, **options)


def _write_in_pool(write: Callable[[Job], str], jobs: Sequence[Job], processes: int | None) -> Iterator[str]:
    """``write`` over ``jobs`` in a process pool, in the given order (the library puts the
    longest encodes first); paths as the songs are done, with a progress bar."""
    import os

    workers = min(processes or os.cpu_count() or 1, len(jobs))
    logger.info("writing %d songs with %d processes", len(jobs), workers)
    if workers <= 1:
        with _synth_bar(len(jobs)) as bar:
            for job in jobs:
                done = write(job)
                bar.update()
                yield done
        return
    # The context is chosen and the workers start before the bar exists: tqdm's monitor
    # thread, which every bar starts, would make fork look unsafe.
    with _process_context().Pool(workers) as pool, _synth_bar(len(jobs)) as bar:
        for done in pool.imap_unordered(write, jobs, chunksize=1):
            bar.update()
            yield done


def _synth_bar(total: int) -> Any:
    from tqdm import tqdm

    # A bar on a terminal; none in logs and CI (disable=None: off when stderr is no tty).
    return tqdm(total=total, desc="synth", unit="song", disable=None)


def _process_context() -> multiprocessing.context.BaseContext:
    """fork when it is safe (Linux, no other Python threads), spawn otherwise.

    fork starts at once and works from scripts without an ``if __name__ == "__main__"``
    guard; but a caller holding threads (Ray, torch, a notebook kernel) would fork copies of
    locks held by those threads, so then spawn (which needs the guard in scripts).
    """
    import multiprocessing
    import sys
    import threading

    if sys.platform == "linux" and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _synth_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="directory to write the demo catalogue into")
    parser.add_argument("--songs", type=positive_int, default=120, help="number of songs")
    parser.add_argument("--seed", type=int, default=0, help="seed: the same seed writes the same catalogue")
    parser.add_argument("--difficulty", choices=("normal", "hard"), default="normal",
                        help="hard: ten artists a genre with fewer songs each, genre pairs that share tempo and "
                             "instruments, and recording noise (GitHub issue #14); normal is the demo's catalogue")


def _synth(args: argparse.Namespace) -> None:
    summary = write_demo_catalogue(args.out, n_songs=args.songs, seed=args.seed, difficulty=args.difficulty)
    print(
        f"wrote {summary.songs} {'hard ' if args.difficulty == 'hard' else ''}songs in {len(summary.genres)} genres "
        f"({', '.join(summary.genres)}) "
        f"to {summary.root}, labels in {summary.labels_csv}, "
        f"{len(summary.broken_files)} deliberately broken file(s)"
    )


def _demo_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default="genre-batch-demo",
                        help="directory for the demo: catalogue/ inside it, every output beside it")
    parser.add_argument("--songs", type=positive_int, default=120, help="songs in the demo catalogue")
    parser.add_argument("--epochs", type=positive_int, default=12, help="training epochs")
    parser.add_argument("--workers", type=positive_int, default=1, help="Ray Train workers")
    parser.add_argument("--seed", type=int, default=0, help="seed of catalogue, split and training")
    parser.add_argument("--unlabelled", action="store_true",
                        help="ingest without labels, pretrain (self-supervised) and index with the pretrain run: "
                             "similar songs for a catalogue that has no genres at all")


def _demo_unlabelled(args: argparse.Namespace, root: str, catalogue: str, steps: list[str]) -> None:
    """The demo of a catalogue with no labels: pretrain, index with it, similar songs (the
    genre folders in the paths show whether the neighbours are alike; the model never saw them)."""
    from genre_batch.answers import PublishedIndex
    from genre_batch.config import SplitConfig, TrainConfig
    from pipelines.index import run_index
    from pipelines.ingest import run_ingest
    from pipelines.pretrain import run_pretrain

    steps.append(run_ingest(catalogue, root, labels="none", splits=SplitConfig(seed=args.seed)).summary())
    pretrain = run_pretrain(root, TrainConfig(epochs=args.epochs, num_workers=args.workers, seed=args.seed))
    steps.append(pretrain.summary())
    steps.append(run_index(root, model_run=pretrain.run).summary())
    published = PublishedIndex(root)
    print("\n".join(["", "=" * 78, "genre-batch demo, no labels", "=" * 78] + steps))
    print(f"\n{published.version.manifest.genres}")
    for song in published.predictions.head(3).itertuples():
        print(f"\nsimilar to {song.path}:")
        for n in published.similar_to_song(song.song_id, 5):
            print(f"  {n.similarity:6.3f}  {n.path}")
    print(f"\nnext: genre-batch similar --root {root} --song SONG_ID; label some songs and "
          f"genre-batch train --root {root} --init {pretrain.run}")


def _demo(args: argparse.Namespace) -> None:
    from genre_batch.config import SplitConfig, TrainConfig
    from genre_batch.storage import join, normalise_uri
    from pipelines.index import run_index
    from pipelines.ingest import run_ingest
    from pipelines.train import run_train

    root = normalise_uri(args.root)
    catalogue = join(root, "catalogue")
    steps = []
    summary = write_demo_catalogue(catalogue, n_songs=args.songs, seed=args.seed)
    steps.append(f"synth: {summary.songs} songs in {len(summary.genres)} genres -> {catalogue}")
    if args.unlabelled:
        return _demo_unlabelled(args, root, catalogue, steps)
    # The catalogue's labels.csv: genres as the folders say, and a split that puts every genre
    # on every side (synth.curated_split), so the demo can report each genre's accuracy.
    ingest = run_ingest(catalogue, root, labels=summary.labels_csv, splits=SplitConfig(seed=args.seed))
    steps.append(ingest.summary())
    train = run_train(root, TrainConfig(epochs=args.epochs, num_workers=args.workers, seed=args.seed))
    steps.append(train.summary())
    index = run_index(root)
    steps.append(index.summary())

    from genre_batch.answers import PublishedIndex

    published = PublishedIndex(root)
    report = published.evaluate()
    test = report["test"]
    print("\n".join(["", "=" * 78, "genre-batch demo", "=" * 78] + steps))
    print(
        f"\ningested: {ingest.songs} songs, {ingest.tiles} tiles, {ingest.errors} errors "
        f"(see {root}/ingest/{ingest.version}/errors.parquet)"
    )
    print(
        f"test songs: {test['songs']}, song accuracy {format_metric(test['song_accuracy'])}, "
        f"tile accuracy {format_metric(test['tile_accuracy'])}, genre precision@10 {format_metric(test['genre_precision_at_10'])}"
    )
    print(format_evaluation(report, 10))
    examples = demo_examples(published.predictions, 3)
    for song in examples.itertuples():
        print(f"\nsimilar to {song.song_id} [{song.label}] {song.path}:")
        for n in published.similar_to_song(song.song_id, 5):
            print(f"  {n.similarity:6.3f}  {n.genre:<16} {n.path}")
    if len(examples) >= 2:
        history = [(examples.iloc[0].song_id, 2.0), (examples.iloc[1].song_id, 1.0)]
        playlist = published.playlist(history, n=8, variety=0.3)
        print(f"\nplaylist of {len(playlist.entries)} songs for a history of 2 plays of the first example and 1 of "
              f"the second ({_shares(playlist.history_mix)}), variety 0.3:")
        for e in playlist.entries:
            print(f"  {e.relevance:6.3f}  {e.genre:<16} {e.path}")
    print(
        "\nnext: genre-batch similar --root {r} --song {s}\n      genre-batch classify --root {r} FILE.mp3"
        "\n      genre-batch playlist --root {r} --song {s} -n 10 --variety 0.3"
        "\n      genre-batch genres --root {r} --out genres.csv"
        "\n      analysts: {r}/ingest/*/songs.parquet, {r}/index/*/predictions.parquet (docs/SCHEMAS.md)".format(
            r=root, s=examples.iloc[0].song_id if len(examples) else "<song_id>"
        )
    )


def demo_examples(predictions: Any, n: int) -> Any:
    """Songs to show `similar` for: test songs of different genres first, then other test
    songs, then any song, so a small demo still shows ``n`` answers."""
    order = predictions.assign(
        _not_test=predictions["split"] != "test",
        _nth_of_genre=predictions.groupby(["split", "label"], dropna=False).cumcount(),
    ).sort_values(["_not_test", "_nth_of_genre", "label", "song_id"], kind="stable")
    return order.drop(columns=["_not_test", "_nth_of_genre"]).head(n)


COMMANDS.update(
    {
        "synth": ("write a deterministic demo catalogue of real mp3 files", _synth_args, _synth),
        "demo": ("synth + ingest + train + index + evaluate on a generated catalogue", _demo_args, _demo),
    }
)
