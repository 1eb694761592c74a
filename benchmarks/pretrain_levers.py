"""Pretraining levers, in one process (no Ray): a recipe's precision@10 of a pretrain-only embedding.

    .venv/bin/python benchmarks/pretrain_levers.py ROOT '{"epochs": 30, "time_stretch": 0.15}'

ROOT holds a published ingest with labels (e.g. benchmarks/pretrain.py's root-100 of the hard demo);
the JSON is TrainConfig fields (``model``: a family name) plus ``temperature``,
``view_frames`` and ``rerecord_db`` (default 0 here: off). It pretrains the
library's ``PretrainLoop`` on every song's tiles (labels unused), and every 10 epochs prints the
loss and the genre precision@10 of the test songs' neighbours: the song vectors as the index
searches them (mean of tile embeddings, unit length, centred) and standardised per dimension.
Screening only, one seed: a lever that wins here is then run through benchmarks/pretrain.py.
"""
import json, sys, time
from pathlib import Path
import argparse

import numpy as np, torch, pyarrow as pa
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from genre_batch.artifacts import published_ingest
from genre_batch.tables import read_table, read_frame
from genre_batch.config import ModelConfig, TrainConfig
from genre_batch.pretraining import PretrainLoop
from genre_batch.contrastive import pair_plan
from genre_batch.tiles import tiles_from_binary
from genre_batch.models import tiles_to_input
from genre_batch.comparison import genre_precision_at_k
from genre_batch.index import centre_vectors

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="storage root with a published, labelled ingest")
    parser.add_argument("spec", help="JSON: TrainConfig fields, temperature, view_frames")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: two runs side by side)")
    args = parser.parse_args()
    root, spec = args.root, json.loads(args.spec)
    torch.set_num_threads(args.threads)
    ingest = published_ingest(root)
    features = ingest.feature_config
    table = pa.concat_tables([read_table(u, ["song_id", "tile_index", "tile"]) for u in ingest.tile_uris])
    songs = read_frame(ingest.songs_uri, ["song_id", "label", "split", "n_tiles"])
    sid = np.asarray(table.column("song_id").to_pylist(), dtype=object)
    ti = table.column("tile_index").to_numpy()
    tiles = np.array(tiles_from_binary(table.column("tile").to_pylist(), features))
    order = np.lexsort((ti, sid))
    rows = {}
    for r in order: rows.setdefault(sid[r], []).append(r)
    counts = {s: len(r) for s, r in rows.items()}
    temperature = spec.pop("temperature", 0.1)
    view_frames = spec.pop("view_frames", 192)
    rerecord_db = spec.pop("rerecord_db", 0.0)  # 0: the recipe before rerecording (the default is RERECORD_DB)
    if "model" in spec:  # a family name, at its default sizes
        spec["model"] = ModelConfig.for_family(spec["model"])
    cfg = TrainConfig(**spec)
    loop = PretrainLoop(cfg, features, temperature=temperature, view_frames=view_frames, rerecord_db=rerecord_db)
    t0 = time.time()

    def precision() -> list[float]:
        enc = loop.inner.encoder.eval()
        with torch.no_grad():
            emb = torch.cat([enc.embed(tiles_to_input(torch.from_numpy(tiles[i:i+64]))) for i in range(0, len(tiles), 64)]).numpy()
        ids = sorted(rows)
        vec = np.stack([emb[rows[s]].mean(0) for s in ids])
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        meta = songs.set_index("song_id").loc[ids]
        labels = meta["label"].fillna("?").tolist()
        q = np.flatnonzero((meta["split"] == "test").to_numpy())
        c = centre_vectors(vec, vec.mean(0))
        z = (vec - vec.mean(0)) / (vec.std(0) + 1e-6)
        return [round(genre_precision_at_k(v, labels, q, 10), 3) for v in (c, z)]

    out = []
    for epoch in range(cfg.epochs):
        plan = pair_plan(counts, cfg.batch_size, cfg.seed, epoch)
        batches = ((torch.from_numpy(tiles[[rows[p.song_id][p.tile_a] for p in b]]), torch.from_numpy(tiles[[rows[p.song_id][p.tile_b] for p in b]])) for b in plan)
        m = loop.run_epoch(epoch, batches)
        if (epoch + 1) % 10 == 0 or epoch + 1 == cfg.epochs:
            out.append((epoch + 1, round(m["train_loss"], 3), precision()))
    print(json.dumps({"spec": args.spec, "curve": out, "s": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    main()
