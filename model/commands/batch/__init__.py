"""``python -m model batch``: detect or hide the faces of an archive on Ray Data.

``detect`` writes Parquet rows (path, width, height, input_size, faces, error),
one per photo: a photo that cannot be read is a row with its error, never a
failed run. ``anonymize`` writes each photo under OUT as ``python -m model
anonymize`` does (its tree, format and size; no metadata). The flags of the
model, backend, sizing and thresholds, and their defaults, are those of the
plain commands. Each Ray actor builds one Detector and runs it on batches of
photos; Ray runs on this machine unless ``--address`` (or ``RAY_ADDRESS``)
names a cluster. Needs the ``batch`` extra: pip install 'extd-face[batch]'.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.commands.anonymize import add_photo_options, output_path
from model.commands.arguments import add_detector_options, add_options, options_from
from model.commands.detect import CHUNK
from model.errors import OptionsError
from model.options import SERVING, PostprocessOptions, described
from model.weights import load_checkpoint

if TYPE_CHECKING:
    import pyarrow as pa

    from model.commands.batch.files import PhotoSource


# On 2 cores one actor of 2 CPUs took 1.27 times the plain command's time for 200 photos, two
# actors of 1 CPU 1.99 times (bench/batch.py, docs/batch.md).
DEFAULT_CPUS_PER_ACTOR = 2.0


@dataclass(frozen=True)
class RayOptions:
    """Where the batch runs and how it is cut up."""

    address: str | None = described(
        None,
        "the Ray cluster to run on, as ray.init takes it (host:6379, auto)",
        unset="RAY_ADDRESS, else Ray on this machine",
    )
    actors: int | None = described(
        None,
        "Ray actors, each with one Detector",
        unset="as many as the cluster's CPUs (or GPUs, with --num-gpus) hold",
    )
    num_cpus: float | None = described(
        None,
        "CPUs per actor: its backend runs that many threads (at least one)",
        unset=f"{DEFAULT_CPUS_PER_ACTOR:g}, or the cluster's CPUs where it has fewer",
    )
    num_gpus: float = described(0.0, "GPUs per actor: above 0, each actor runs on its GPU")
    batch_size: int = described(
        CHUNK, "photos per actor call, and per forward pass at most (on a GPU, more)"
    )

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise OptionsError(f"actors must be at least 1, got {self.actors}")
        if (
            (self.num_cpus is not None and self.num_cpus <= 0)
            or self.num_gpus < 0
            or self.batch_size < 1
        ):
            raise OptionsError("num_cpus and batch_size must be positive, num_gpus not negative")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "batch", help="detect or hide faces in an archive, on Ray", description=__doc__
    )
    jobs = parser.add_subparsers(dest="job", required=True)
    detect = jobs.add_parser(
        "detect", help="faces of every photo, as Parquet rows", description=__doc__
    )
    detect.add_argument(
        "--out", required=True, help="the Parquet folder of the rows: a path or a URI"
    )
    _add_batch_options(detect)
    add_options(detect, PostprocessOptions, defaults=SERVING)
    detect.set_defaults(handler=run_detect)
    anonymize = jobs.add_parser(
        "anonymize", help="every photo with its faces hidden", description=__doc__
    )
    anonymize.add_argument(
        "--out",
        type=_folder,
        required=True,
        help="the folder of the results (on a cluster, one that every node mounts)",
    )
    _add_batch_options(anonymize)
    add_photo_options(anonymize)
    anonymize.set_defaults(handler=run_anonymize)


def _folder(text: str) -> Path:
    if "://" in text:
        raise argparse.ArgumentTypeError("photos are written to a folder, not a URI")
    return Path(text)


def _add_batch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input",
        help="a folder (searched recursively), a glob, a photo, a text file listing one path "
        "or URI a line, or the URI of one of these (s3://, gs://, abfs://, hdfs://, file://)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="skip the photos OUT already holds results of"
    )
    add_options(parser, RayOptions)
    add_detector_options(parser)


def run_detect(args: argparse.Namespace) -> int:
    """Parquet rows of every photo under ``args.out``."""
    started = time.perf_counter()
    _check_extra()
    import pyarrow.compute as pc

    from model.commands.batch.files import ResultFolder, list_photos
    from model.commands.batch.workers import DetectPhotos

    source, paths = list_photos(args.input)
    results = ResultFolder(args.out)
    done = results.paths()
    if done and not args.resume:
        raise OptionsError(
            f"{args.out} already holds results: --resume adds the photos missing from it"
        )
    todo = [p for p in paths if p not in done]
    tally = Tally(skipped=len(paths) - len(todo))
    try:
        for rows in _process(DetectPhotos, todo, source, args):
            results.add(rows)
            tally.add(rows, pc.sum(pc.list_value_length(rows.column("faces"))).as_py())
    finally:  # a run stopped by a failure or Ctrl-C keeps the rows it has: --resume goes on
        results.flush()
    print(tally.line(time.perf_counter() - started))
    return 0


def run_anonymize(args: argparse.Namespace) -> int:
    """Every photo hidden and written under ``args.out``."""
    started = time.perf_counter()
    _check_extra()
    import pyarrow.compute as pc

    from model.commands.batch.files import list_photos
    from model.commands.batch.workers import HidePhotos

    source, paths = list_photos(args.input)
    todo = paths
    if args.resume:
        todo = [p for p in paths if not _written(source.relative(p), args)]
    tally = Tally(skipped=len(paths) - len(todo))
    for rows in _process(HidePhotos, todo, source, args):
        tally.add(rows, pc.sum(rows.column("faces")).as_py())
        for error in rows.column("error").drop_null().to_pylist():
            print(f"skipped {error}", file=sys.stderr)
    print(tally.line(time.perf_counter() - started))
    return 0


# The format a photo is written back in, as its name tells (read_header tells for sure, but
# would read every photo): a photo misnamed is hidden again by --resume, never skipped wrongly.
_FORMAT_OF_SUFFIX = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp"}


def _written(relative: Path, args: argparse.Namespace) -> bool:
    fmt = args.format or _FORMAT_OF_SUFFIX.get(relative.suffix.lower(), "png")
    return output_path(relative, args.out, fmt).is_file()


@dataclass
class Tally:
    """What the summary line says."""

    photos: int = 0
    faces: int = 0
    errors: int = 0
    skipped: int = 0

    def add(self, rows: pa.Table, faces: int | None) -> None:
        self.photos += rows.num_rows
        self.errors += rows.num_rows - rows.column("error").null_count
        self.faces += faces or 0

    def line(self, seconds: float) -> str:
        skipped = f", {self.skipped} already in OUT" if self.skipped else ""
        return (
            f"{self.photos} photos, {self.faces} faces, {self.errors} errors{skipped} "
            f"in {seconds:.1f} s ({self.photos / seconds:.2f} photos/s)"
        )


def _process(
    worker: type, paths: list[str], source: PhotoSource, args: argparse.Namespace
) -> Iterator[pa.Table]:
    """The rows of ``worker`` over ``paths``, as Arrow tables, while Ray runs it."""
    if not paths:
        return
    options = options_from(RayOptions, args)
    if options.num_gpus == 0 and args.device != "cpu":
        raise OptionsError(f"--device {args.device} needs --num-gpus: Ray gives actors their GPU")
    # Loaded here and sent with the workers: the cluster's nodes need no weights of their own.
    checkpoint = load_checkpoint(args.weights, runtime=args.runtime)
    with _ray(options.address) as ray:
        if options.num_cpus is None:
            cpus = min(DEFAULT_CPUS_PER_ACTOR, ray.cluster_resources().get("CPU", 1.0))
            options = replace(options, num_cpus=cpus)
        args = argparse.Namespace(**{**vars(args), "num_cpus": options.num_cpus})
        actors = min(options.actors or _actors(ray, options), len(paths))
        # A block per actor call (smaller for a few photos, so that every actor has some):
        # Ray hands the calls to the actors as they free up.
        per_call = min(options.batch_size, -(-len(paths) // actors))
        rows = ray.data.from_items(
            [{"path": p} for p in paths], override_num_blocks=-(-len(paths) // per_call)
        ).map_batches(
            worker,
            fn_constructor_kwargs={"args": args, "checkpoint": checkpoint, "source": source},
            batch_size=per_call,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=options.num_cpus,
            num_gpus=options.num_gpus or None,
            # Ray runs workers at nice 15, below everything else on a shared machine; the
            # actors run at the priority of the command that started them, as detect does.
            runtime_env={"env_vars": {"RAY_worker_niceness": "0"}},
        )
        yield from rows.iter_batches(batch_size=None, batch_format="pyarrow")


def _check_extra() -> None:
    if not all(importlib.util.find_spec(name) for name in ("ray", "pyarrow")):
        raise OptionsError("batch needs the batch extra: pip install 'extd-face[batch]'")


@contextmanager
def _ray(address: str | None):
    """Ray, connected to the cluster named (``address``, else ``RAY_ADDRESS``) or started here
    for the run; a Ray the caller already started is used as it is."""
    import ray
    import ray.data

    if ray.is_initialized():
        yield ray
        return
    ray.init(address=address, include_dashboard=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _actors(ray: Any, options: RayOptions) -> int:
    """As many actors as the cluster's CPUs (or GPUs) hold now. None fitting is an error
    rather than a wait that may never end; ``--actors`` waits (for an autoscaler)."""
    kind, each = ("GPU", options.num_gpus) if options.num_gpus else ("CPU", options.num_cpus)
    has = ray.cluster_resources().get(kind, 0)
    if has < each:
        raise OptionsError(
            f"the Ray cluster has {has:g} {kind}s, and an actor needs {each:g}: give --actors "
            "to wait for an autoscaler to add them"
        )
    return int(has // each)
