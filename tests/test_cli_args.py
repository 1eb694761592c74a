"""Out-of-range flags: a usage error or one line naming the value, before any work starts."""

from __future__ import annotations

import pytest

from genre_batch.cli import main
from genre_batch.config import FeatureConfig, IndexConfig, SplitConfig, TrainConfig
from genre_batch.errors import ConfigError, GenreBatchError


@pytest.mark.parametrize(
    "argv",
    [
        ["synth", "--out", "x", "--songs", "0"],
        ["demo", "--epochs", "0"],
        ["demo", "--workers", "-1"],
        ["ingest", "--catalogue", "c", "--root", "r", "--tile-hop", "0"],
        ["ingest", "--catalogue", "c", "--root", "r", "--files-per-task", "0"],
        ["train", "--root", "r", "--epochs", "0"],
        ["train", "--root", "r", "--workers", "0"],
        ["train", "--root", "r", "--batch-size", "0"],
        ["index", "--root", "r", "--n-trees", "0"],
        ["index", "--root", "r", "--batch-size", "-4"],
        ["evaluate", "--root", "r", "-k", "0"],
        ["similar", "--root", "r", "--song", "s", "-k", "0"],
        ["playlist", "--root", "r", "--song", "s", "-n", "0"],
        ["nightly", "--catalogue", "c", "--root", "r", "--keep", "0"],
    ],
)
def test_a_count_below_one_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "must be at least 1, got" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--root", "r", "--lr", "0"], "learning_rate must be positive, got 0.0"),
        (["index", "--root", "r", "--target-accuracy", "1.5"], "target_accuracy must be in [0, 1], got 1.5"),
        (["index", "--root", "r", "--min-coverage", "-0.1"], "min_coverage must be in [0, 1], got -0.1"),
        (["ingest", "--catalogue", "c", "--root", "r", "--tile-hop", "300"],
         "tile_hop_frames (--tile-hop) must be in 1..256, got 300"),
        (["pretrain", "--root", "r", "--rerecord-db", "-3"], "--rerecord-db must be at least 0, got -3.0"),
    ],
)
def test_a_config_value_out_of_range_is_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written: the roots above would land here
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"error: {message}"
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_configs_check_their_ranges():
    for build in (
        lambda: TrainConfig(epochs=0),
        lambda: TrainConfig(num_workers=0),
        lambda: TrainConfig(label_smoothing=1.0),
        lambda: TrainConfig(freq_mask=-1),
        lambda: IndexConfig(n_trees=0),
        lambda: IndexConfig(min_coverage=2),
        lambda: FeatureConfig(tile_hop_frames=0),
        lambda: SplitConfig(train=0.5),
    ):
        with pytest.raises(ConfigError):
            build()
    assert issubclass(ConfigError, GenreBatchError) and issubclass(ConfigError, ValueError)
    TrainConfig(), IndexConfig(), FeatureConfig(), SplitConfig()  # the defaults are in range


@pytest.mark.parametrize("job", ["train", "index", "nightly"])
def test_the_jobs_agree_on_the_device_flags(job):
    """train, index and nightly: GPUs when the cluster has any (None), --gpu insists, --cpu never."""
    from genre_batch.cli import build_parser

    base = [job, "--root", "r"] + (["--catalogue", "c"] if job == "nightly" else [])
    parse = build_parser(base).parse_args
    assert parse(base).use_gpu is None
    assert parse(base + ["--gpu"]).use_gpu is True
    assert parse(base + ["--cpu"]).use_gpu is False
    with pytest.raises(SystemExit):
        parse(base + ["--gpu", "--cpu"])


def test_the_device_flags_say_what_they_do(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: on GPUs when the cluster has any" in text and "on CPUs only" in text


def test_ingest_and_nightly_share_the_ingest_config():
    from genre_batch.cli import build_parser
    from genre_batch.config import IngestConfig

    for argv in (["ingest", "--catalogue", "c", "--root", "r"], ["nightly", "--catalogue", "c", "--root", "r"]):
        assert build_parser(argv).parse_args(argv).files_per_task == IngestConfig().files_per_task
    with pytest.raises(ConfigError):
        IngestConfig(files_per_task=0)


@pytest.mark.parametrize("job", ["train", "compare"])
def test_train_and_compare_share_the_recipe_flags(job):
    from genre_batch.cli import build_parser
    from pipelines.train import recipe_from_args

    argv = [job, "--root", "r", "--epochs", "7", "--mixup", "0.2", "--time-stretch", "0.1", "--crop-frames", "192",
            "--freq-shift", "4", "--freq-mask", "0", "--select-on", "tile", "--patience", "3", "--ema", "0.99", "--band-norm"]
    config = recipe_from_args(build_parser(argv).parse_args(argv))
    assert (config.epochs, config.mixup_alpha, config.time_stretch, config.crop_frames, config.freq_shift,
            config.freq_mask, config.select_on, config.patience, config.ema_decay) == (7, 0.2, 0.1, 192, 4, 0, "tile", 3,
                                                                                         0.99)
    assert config.band_norm is True
    argv = [job, "--root", "r", "--dropout", "0.1", "--weight-decay", "0.01", "--windows", "3", "--window-frames", "160"]
    config = recipe_from_args(build_parser(argv).parse_args(argv))
    assert (config.model.dropout, config.weight_decay, config.model.eval_windows, config.model.eval_window_frames) == (
        0.1, 0.01, 3, 160)
    assert recipe_from_args(build_parser([job, "--root", "r"]).parse_args([job, "--root", "r"])) == TrainConfig()
