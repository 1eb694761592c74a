"""ingest -> train -> index submitted with `ray job submit` to a real two-node local Ray cluster.

`ray start --head` plus a second `ray start --address ...` node on this machine, so tasks and
the two DDP training workers really cross node boundaries; catalogue and outputs in the S3
server; credentials only in the nodes' environment, as on a cloud cluster with instance roles.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import s3fs

from genre_batch.commands import write_demo_catalogue
from tests.servers import ACCESS_KEY_ID, SECRET_ACCESS_KEY, free_ports, stop_ray_under

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
CATALOGUE = "s3://gb-cluster-catalogue/music"
ROOT = "s3://gb-cluster-outputs/genre-batch"


def ray_cli(env: dict[str, str], *argv: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *argv], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def cluster(s3_server, tmp_path_factory):
    import ray

    if ray.is_initialized():  # a local Ray of another module must not be mistaken for the cluster
        ray.shutdown()
    home = tmp_path_factory.mktemp("cluster-home")
    # Short: Ray's socket paths under it must stay within AF_UNIX's 107 bytes (pytest-xdist's
    # temp dirs are longer).
    temp_dir = tempfile.mkdtemp(prefix="gb-cluster-", dir="/tmp")
    # The nodes run with this virtualenv activated, as a cluster image has its Python first
    # on PATH: the jobs' `python -m pipelines...` must find the installed dependencies.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    # RAY_AUTH_MODE=disabled, knowingly: a throwaway cluster on 127.0.0.1 inside the test, and
    # `ray start` in Ray 2.60 refuses to start with token auth on but no token in a fresh HOME.
    # One CPU per node: the two nodes share this machine's two cores.
    env = {**os.environ, **s3_server.env, "HOME": str(home), "PYTHONUNBUFFERED": "1", "PATH": path,
           "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    # Every port a node would otherwise take by default is chosen here, distinct: two nodes on one
    # machine (and the S3 server) must not both want Ray's default agent or client port.
    port, dashboard, head_agent, worker_agent, client = free_ports(5)
    try:
        head = ray_cli(env, "start", "--head", f"--port={port}", f"--dashboard-port={dashboard}",
                       f"--dashboard-agent-listen-port={head_agent}", f"--ray-client-server-port={client}",
                       "--dashboard-host=127.0.0.1", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                       f"--temp-dir={temp_dir}", "--disable-usage-stats")
        assert head.returncode == 0, head.stdout + head.stderr
        worker = ray_cli(env, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1",
                         f"--dashboard-agent-listen-port={worker_agent}",
                         "--node-ip-address=127.0.0.1", "--disable-usage-stats")
        assert worker.returncode == 0, worker.stdout + worker.stderr
        yield {"env": env, "address": f"http://127.0.0.1:{dashboard}"}
    finally:
        # This cluster's processes only (both nodes run under its temp dir; the client server
        # names its GCS port): other test modules' Rays may run beside it.
        stop_ray_under(str(temp_dir), f":{port} ")
        shutil.rmtree(temp_dir, ignore_errors=True)


def submit(cluster, submission_id: str, *entrypoint: str) -> subprocess.CompletedProcess:
    return ray_cli(
        cluster["env"], "job", "submit", "--address", cluster["address"], "--submission-id", submission_id,
        "--working-dir", ".", "--runtime-env", "cluster/runtime_env.yaml", "--", *entrypoint,
    )


def job_client(cluster):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster["address"])


def status_and_logs(cluster, submission_id: str) -> tuple[str, str]:
    """The job's final status and its whole log, through the Jobs SDK (what `ray job status` /
    `ray job logs` print, without a CLI process start each)."""
    client = job_client(cluster)
    return str(client.get_job_status(submission_id).value), client.get_job_logs(submission_id)


def nodes_that_ran(cluster, submission_id: str, task_name: str) -> set[str]:
    """Node ids of the finished tasks of that name in a submitted job (Ray's state API)."""
    from ray.util.state import list_tasks

    job_id = job_client(cluster).get_job_info(submission_id).job_id
    tasks = list_tasks(address=cluster["address"], filters=[("job_id", "=", job_id)], limit=10_000, detail=True)
    ran = [t for t in tasks if task_name in t.name and t.state == "FINISHED"]
    assert ran, sorted({t.name for t in tasks})
    return {t.node_id for t in ran}


def test_chain_as_submitted_jobs(cluster, s3_server, tmp_path):
    from ray.util.state import list_nodes

    alive = [n for n in list_nodes(address=cluster["address"]) if n.state == "ALIVE"]
    assert len(alive) == 2, alive

    s3_server.reset()
    fs = s3fs.S3FileSystem(endpoint_url=s3_server.endpoint)
    fs.mkdir("gb-cluster-catalogue")
    fs.mkdir("gb-cluster-outputs")
    summary = write_demo_catalogue(tmp_path / "music", n_songs=18, seed=11, min_duration_s=12.0, max_duration_s=14.0)
    fs.put(str(tmp_path / "music"), "gb-cluster-catalogue/", recursive=True)

    jobs = [
        ("gb-ingest", ["python", "-m", "pipelines.ingest", "--catalogue", CATALOGUE, "--root", ROOT,
                       "--files-per-task", "3"]),
        ("gb-train", ["python", "-m", "pipelines.train", "--root", ROOT, "--epochs", "1", "--workers", "2",
                      "--batch-size", "8"]),
        ("gb-index", ["python", "-m", "pipelines.index", "--root", ROOT, "--n-trees", "5"]),
    ]
    for submission_id, entrypoint in jobs:
        result = submit(cluster, submission_id, *entrypoint)
        assert result.returncode == 0, f"{submission_id} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        status, logs = status_and_logs(cluster, submission_id)
        assert status == "SUCCEEDED", logs[-4000:]
        assert SECRET_ACCESS_KEY not in logs and ACCESS_KEY_ID not in logs
        if submission_id == "gb-ingest":
            assert f"{summary.songs} songs" in logs and "1 errors" in logs, logs[-2000:]
            assert len(nodes_that_ran(cluster, submission_id, "MapBatches(ingest_batch)")) == 2, \
                "the ingest tasks must have run on both nodes"
        if submission_id == "gb-train":
            assert "epoch 1/1" in logs and "test song accuracy" in logs, logs[-2000:]

    index = fs.cat(f"{ROOT}/index/LATEST").decode().strip()
    predictions = pd.read_parquet(
        f"{ROOT}/index/{index}/predictions.parquet", storage_options={"client_kwargs": {"endpoint_url": s3_server.endpoint}}
    )
    assert len(predictions) == summary.songs
    manifest = json.loads(fs.cat(f"{ROOT}/index/{index}/manifest.json"))
    run = fs.cat(f"{ROOT}/models/LATEST").decode().strip()
    assert manifest["model_run"] == run
    metrics = json.loads(fs.cat(f"{ROOT}/models/{run}/metrics.json"))
    assert metrics["train_config"]["num_workers"] == 2
    # Ray Train wrote its per-epoch checkpoints into the bucket (RunConfig storage_path there).
    assert fs.glob(f"{ROOT}/models/{run}/ray/checkpoint_*/model.pt")
    assert fs.exists(f"{ROOT}/models/{run}/model.pt") and fs.exists(f"{ROOT}/models/{run}/training_curves.png")

    # The nightly job, submitted the same way, after two songs were added to the bucket. (Its
    # Ray Data paths for bigger deltas are the ingest and index stages above, and are run by
    # test_nightly on a local Ray: a two-song night decodes and embeds in the job's driver.)
    import dataclasses

    import soundfile

    from genre_batch.synth import plan_catalogue, render_song

    for song in plan_catalogue(2, seed=808, min_duration_s=12.0, max_duration_s=12.5):
        song = dataclasses.replace(song, relative_path=song.relative_path.replace(".mp3", " (new).mp3"))
        soundfile.write(tmp_path / "new.mp3", render_song(song), song.sample_rate, format="MP3")
        fs.put_file(str(tmp_path / "new.mp3"), f"{CATALOGUE}/{song.relative_path}")
    result = submit(cluster, "gb-nightly", "python", "-m", "pipelines.nightly", "--catalogue", CATALOGUE,
                    "--root", ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    status, logs = status_and_logs(cluster, "gb-nightly")
    assert status == "SUCCEEDED" and "2 new, 0 changed, 0 removed" in logs and "published ingest, index" in logs, logs[-2000:]
    assert SECRET_ACCESS_KEY not in logs and ACCESS_KEY_ID not in logs
    index = fs.cat(f"{ROOT}/index/LATEST").decode().strip()
    assert json.loads(fs.cat(f"{ROOT}/index/{index}/manifest.json"))["songs"] == summary.songs + 2


def test_failed_job_exits_non_zero(cluster):
    result = submit(cluster, "gb-bad", "python", "-m", "pipelines.train", "--root", "s3://gb-cluster-outputs/empty")
    assert result.returncode != 0
    # The CLI's own status line, once: what an operator's script greps.
    status = ray_cli(cluster["env"], "job", "status", "--address", cluster["address"], "gb-bad")
    assert "Job 'gb-bad' failed" in status.stdout, status.stdout
    assert "no ingest published yet" in status_and_logs(cluster, "gb-bad")[1]
