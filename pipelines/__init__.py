"""Ray glue: one thin module per job (ingest, train, index, nightly), reused by the CLI.

Importing this package, before anything here imports Ray, sets the one Ray setting that Ray
reads only at its own import: which forwarded worker log lines the driver drops.
"""

from __future__ import annotations

import os

# Lines Ray's own actors print that leave a user nothing to act on (regular expressions,
# matched against each worker line the driver would print):
RAY_LOG_NOISE: tuple[str, ...] = (
    # Ray Train's PlacementGroupCleaner asks the State API every few seconds; a local Ray
    # started without its dashboard has none, and the local Ray ends with the driver anyway,
    # taking its placement groups with it.
    r"Failed to query Ray Train Controller actor state",
    # Ray's own actors (Ray Data's map workers, Ray Train's PreemptionWatcher) pass their
    # setup through the object store; the warning is about Ray's code, not ours (a trivial
    # Ray Data actor class gets it too). The driver's own copy, one line per actor pool, comes
    # from Ray's C++ logger and stays: silencing that would hide every error Ray's core logs.
    r"has constructor arguments in the object store and max_restarts > 0",
    # Ray Train's DatasetManager calls a Ray Data option that Ray deprecated (two lines).
    r"RayDeprecationWarning: `ExecutionOptions\.exclude_resources` is deprecated",
    r"^\s*self\.exclude_resources = exclude_resources\s*$",
    # Off a terminal the progress bars are off on purpose (_ray.quiet_ray_data); each worker
    # that runs a dataset then advises turning them on.
    r"^Progress bars disabled\. To enable, set",
    # Per epoch, Ray Train repeats the metrics the training loop's own epoch line gives, with
    # the checkpoint's path (one ~700-character line), and Ray Data reports each split's
    # dataset (two lines, "finished in 0.00 seconds": the splits are cached in memory).
    r"^Reporting training result \d+: TrainingReport\(",
    r"Dataset (?:train|valid)_\w+ execution finished in ",
    # The mp3 decoder's notes on a damaged file (libmpg123 writes them to stderr itself): the
    # file becomes a song from what could be decoded, or an error row that says why.
    r"^\[src/libmpg123/",
    r"^Note: (?:Illegal Audio-MPEG-Header|Trying to resync|Skipped \d+ bytes in input)",
    r"^Warning: Xing stream size off by more than 1%",
    # `serve` stopping: Serve's controller is killed while its graceful shutdown is still being
    # retried; the shutdown has happened (the job's last line says so).
    r"Task ServeController\.graceful_shutdown failed",
)

# Ray's documented log filter (RAY_DEDUP_LOGS_SKIP_REGEX). A value the user set wins; an empty
# one turns the filter off and shows every line.
RAY_LOG_FILTER = "|".join(f"(?:{pattern})" for pattern in RAY_LOG_NOISE)
os.environ.setdefault("RAY_DEDUP_LOGS_SKIP_REGEX", RAY_LOG_FILTER)
