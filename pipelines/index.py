"""Index job: embed every song with the published model, decide genres, build and publish Annoy.

1. Ray Data batch inference over every tile (actor pool, GPU when present), pooled per song:
   embedding = L2-normalised mean of tile embeddings, probabilities = mean of tile softmaxes.
2. The library (``genre_batch.indexing``) chooses the "unknown" threshold on the validation
   songs, writes predictions.parquet (one row per song, item_id = Annoy id) and songs.ann
   under a new version, the manifest last, and moves ``index/LATEST`` to it.

    python -m pipelines.index --root URI
"""

from __future__ import annotations

import argparse
import logging
import time

import pandas as pd

from genre_batch.artifacts import IngestVersion, published_ingest
from genre_batch.config import IndexConfig
from genre_batch.entry import add_device_flags, positive_int
from genre_batch.indexing import IndexReport, ModelInUse, publish_index_version
from genre_batch.layout import RootLayout
from genre_batch.storage import check_writable
from genre_batch.tables import read_frame

logger = logging.getLogger(__name__)


def embed_songs(ingest: IngestVersion, model: ModelInUse, config: IndexConfig, use_gpu: bool) -> pd.DataFrame:
    """Ray Data: pooled per-song outputs (song_id, n_tiles, tiles_correct, probs, embedding)
    of every song of this ingest version."""
    from pipelines.inference import predict_songs

    return predict_songs(ingest.tile_uris, model.uri, ingest.feature_config, use_gpu=use_gpu,
                         batch_size=config.batch_size)


def run_index(
    root: str, config: IndexConfig = IndexConfig(), use_gpu: bool | None = None, address: str | None = None,
    model_run: str | None = None,
) -> IndexReport:
    """``use_gpu`` None: inference on GPUs when the cluster has any. ``model_run``: a training or
    pretrain run to index with instead of the published model (a pretrain run: embeddings and
    similar songs, every genre unknown)."""
    from pipelines._ray import ensure_ray, use_gpus

    started = time.perf_counter()
    check_writable(root)
    layout = RootLayout(root)
    ingest = published_ingest(root)
    ingest.check_tiles()
    model = ModelInUse.of_run(layout, ingest, model_run) if model_run else ModelInUse.published(layout, ingest)
    songs = read_frame(ingest.songs_uri)
    ensure_ray(address)
    pooled = embed_songs(ingest, model, config, use_gpus(use_gpu))
    return publish_index_version(layout, ingest, model, pooled, songs, config, started)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = IndexConfig()
    parser.add_argument("--root", required=True, help="storage root (published ingest and model)")
    parser.add_argument("--n-trees", type=positive_int, default=defaults.n_trees, help="Annoy trees")
    parser.add_argument("--target-accuracy", type=float, default=defaults.target_accuracy,
                        help="accuracy the accepted validation songs must reach (unknown rule)")
    parser.add_argument("--min-coverage", type=float, default=defaults.min_coverage,
                        help="share of validation songs the unknown rule must keep")
    parser.add_argument("--floor-quantile", type=float, default=defaults.floor_quantile,
                        help="unknown below this quantile of the confidences of the right validation answers "
                             "(audio unlike the training songs); 0: off")
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size, help="tiles per inference batch")
    parser.add_argument("--decision", choices=["auto", "mean", "vote"], default=defaults.decision,
                        help="a song's genre from its tiles: the mean of their probabilities, their vote (tiles "
                             "unsure of their top genre abstain), or whichever is right more often on the "
                             "validation songs")
    parser.add_argument("--no-centre", dest="centre", action="store_false",
                        help="search similar songs by the cosine of the song vectors as they are, not centred on "
                             "the catalogue's mean")
    parser.add_argument("--model", default=None, metavar="RUN",
                        help="index with this training or pretrain run (models/RUN) instead of the published model; "
                             "a pretrain run gives embeddings and similar songs, every genre unknown")
    add_device_flags(parser, "inference")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local Ray)")


def from_args(args: argparse.Namespace) -> IndexReport:
    config = IndexConfig(
        n_trees=args.n_trees,
        target_accuracy=args.target_accuracy,
        min_coverage=args.min_coverage,
        floor_quantile=args.floor_quantile,
        batch_size=args.batch_size,
        centre=args.centre,
        decision=args.decision,
    )
    return run_index(args.root, config, use_gpu=args.use_gpu, address=args.address, model_run=args.model)


def main(argv: list[str] | None = None) -> int:
    from genre_batch.entry import job_main

    return job_main("index", __doc__, add_arguments, from_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
