"""Input pipeline throughput: TFRecords -> batched torch tensors, against JPEG decoding alone.

For three kinds of records it writes its own TFRecord files (to a temporary
directory) and times ``DefaultRecordInputGenerator`` in TRAIN mode (shuffled,
interleaved, repeated, batched, parsed, decoded):

* **default**: ``DefaultRecordInputGenerator(pattern, batch_size)`` and nothing
  else, as a user writes it (the workers and batches per transfer it chooses,
  no seed);
* each worker count of ``--workers`` (default 0 .. the CPUs), and where the
  generator sends several batches per transfer, the same count sending them one
  by one; the best of these is the **best** setting;

each beside the decode-only limit of the whole machine: plain simplejpeg loops,
one process per CPU, decoding the same JPEG bytes, measured in between the
pipeline's timing windows (so both see the same machine; the ratio is what to
compare on a shared machine). It also reports the CPU time per record of the
whole pipeline in one process (``num_workers=0``) beside the CPU time of the
decode alone: the difference is the fixed cost per record (reading, shuffling,
protobuf, batching), robust to a busy machine where rates are not. And for case
(a) a training step that waits (``time.sleep``, as for an accelerator) a little
longer than the pipeline needs per batch: the time the step then waits for data.
Last, the CPU time per record of each stage in one thread (framing, the example
stream, parsing with and without decoding) and, with the default workers, of
the training process and of the workers (from /proc): on a shared machine these
are the figures to compare (``--no-stages`` skips them).

tf.data is not a dependency: its figures (from issue 18, same kind of records,
batch 64, 2-core machine) are the reference in docs/benchmarks.md; when
TensorFlow is importable ``--tf`` times it on the same files.

    python benchmarks/input_pipeline.py                 # the table of docs/benchmarks.md
    python benchmarks/input_pipeline.py --cases a --workers 2 --seconds 5
    python benchmarks/input_pipeline.py --profile a     # cProfile of the pipeline, in-process

Cases: (a) pose_env-like: 64x64 JPEG + 5 floats; (b) 256x256 JPEG + 7 floats;
(c) SequenceExamples of 6 frames of 128x128 JPEG (+ 6 x 7 floats).
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import dataclasses
import datetime
import glob
import io
import itertools
import multiprocessing
import os
import platform
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg
import torch

from t2r.data import (
    DefaultRecordInputGenerator,
    Example,
    SequenceExample,
    TFRecordWriter,
    create_serialize_tf_example_fn,
    read_tfrecord,
    read_tfrecord_with_offsets,
)
from t2r.data.parsing import ParseTFExampleFn
from t2r.data.pipeline import RecordBatchDataset
from t2r.modes import ModeKeys
from t2r.specs import ExtendedTensorSpec, TensorSpecStruct


@dataclasses.dataclass
class Case:
    key: str
    title: str
    feature_spec: TensorSpecStruct
    label_spec: TensorSpecStruct
    image_key: str
    frames: int  # JPEG images per example
    examples: int
    make: Callable[[np.random.Generator], tuple[dict[str, Any], dict[str, Any]]]


def scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """A camera-like image: smooth background, a few blocks, mild sensor noise."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(40, 200, 3)
    image = base + 50 * np.stack([x, y, x * y], -1) * rng.uniform(-1, 1, 3)
    for _ in range(4):
        top, left = rng.integers(0, size, 2)
        height, width = rng.integers(size // 8, size // 3, 2)
        image[top : top + height, left : left + width] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def spec(shape: tuple[int, ...], dtype: Any, name: str, **kwargs: Any) -> ExtendedTensorSpec:
    return ExtendedTensorSpec(shape, dtype, name, **kwargs)


def make_cases(scale: float) -> list[Case]:
    pose_features = TensorSpecStruct(
        [
            ("state", spec((64, 64, 3), torch.uint8, "state/image", data_format="jpeg")),
            ("pose", spec((2,), torch.float32, "pose")),
        ]
    )
    pose_labels = TensorSpecStruct(
        [
            ("reward", spec((1,), torch.float32, "reward")),
            ("target_pose", spec((2,), torch.float32, "target_pose")),
        ]
    )
    big_features = TensorSpecStruct(
        [
            ("image", spec((256, 256, 3), torch.uint8, "image", data_format="jpeg")),
            ("state", spec((7,), torch.float32, "state")),
        ]
    )
    big_labels = TensorSpecStruct([("action", spec((7,), torch.float32, "action"))])
    seq_features = TensorSpecStruct(
        [
            (
                "frames",
                spec((128, 128, 3), torch.uint8, "frames", data_format="jpeg", is_sequence=True),
            ),
        ]
    )
    seq_labels = TensorSpecStruct(
        [("action", spec((7,), torch.float32, "action", is_sequence=True))]
    )

    def pose(rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, Any]]:
        return (
            {"state": scene(rng, 64), "pose": rng.random(2, np.float32)},
            {"reward": -rng.random(1, np.float32), "target_pose": rng.random(2, np.float32)},
        )

    def big(rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, Any]]:
        return (
            {"image": scene(rng, 256), "state": rng.random(7, np.float32)},
            {"action": rng.random(7, np.float32)},
        )

    first = scene(np.random.default_rng(1), 128)

    def sequence(rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, Any]]:
        # Frames of one episode differ a little, as consecutive camera frames do.
        frames = np.stack(
            [np.roll(first, shift=int(rng.integers(-8, 8)), axis=1) for _ in range(6)]
        )
        return {"frames": frames}, {"action": rng.random((6, 7), np.float32)}

    n = lambda count: max(64, int(count * scale))  # noqa: E731
    return [
        Case("a", "pose_env 64x64 JPEG + 5 floats", pose_features, pose_labels, "state/image",
             1, n(4096), pose),
        Case("b", "256x256 JPEG + 7 floats", big_features, big_labels, "image", 1, n(768), big),
        Case("c", "SequenceExample 6 x 128x128 JPEG", seq_features, seq_labels, "frames", 6,
             n(384), sequence),
    ]  # fmt: skip


def write_case(case: Case, directory: Path, num_files: int) -> str:
    rng = np.random.default_rng(0)
    serialize = create_serialize_tf_example_fn(case.feature_spec, case.label_spec)
    per_file = -(-case.examples // num_files)
    written = 0
    for f in range(num_files):
        with TFRecordWriter(directory / f"{case.key}-{f:03d}.tfrecord") as writer:
            for _ in range(min(per_file, case.examples - written)):
                features, labels = case.make(rng)
                writer.write(serialize(features, labels))  # type: ignore[arg-type]
                written += 1
    return str(directory / f"{case.key}-*.tfrecord")


def jpegs_of(pattern: str, case: Case) -> list[bytes]:
    out: list[bytes] = []
    for path in sorted(glob.glob(pattern)):
        for record in read_tfrecord(path):
            if case.frames > 1:
                message = SequenceExample.FromString(record)
                steps = message.feature_lists.feature_list[case.image_key].feature
                out.extend(step.bytes_list.value[0] for step in steps)
            else:
                feature = Example.FromString(record).features.feature[case.image_key]
                out.append(feature.bytes_list.value[0])
    return out


def decode_for(jpegs: list[bytes], seconds: float, start: int) -> tuple[int, float, int]:
    """Decodes JPEGs in a plain simplejpeg loop for about ``seconds``.

    Returns (images decoded, time taken, where to start next time).
    """
    done, began = 0, time.perf_counter()
    index = start
    while time.perf_counter() - began < seconds:
        for _ in range(32):
            simplejpeg.decode_jpeg(jpegs[index])
            index = (index + 1) % len(jpegs)
        done += 32
    return done, time.perf_counter() - began, index


def _decoder(conn: Any, jpegs: list[bytes], start: int) -> None:
    while True:
        seconds = conn.recv()
        if seconds is None:
            return
        count, taken, start = decode_for(jpegs, seconds, start)
        conn.send((count, taken))


class ParallelDecoders:
    """``processes`` plain decode loops, run together on demand: the decode-only limit."""

    def __init__(self, jpegs: list[bytes], processes: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conns = []
        self.procs = []
        for i in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_decoder, args=(child, jpegs, i * len(jpegs) // processes))
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def images(self, seconds: float) -> float:
        """Images decoded per second by all loops together over ``seconds``."""
        for conn in self.conns:
            conn.send(seconds)
        return sum(count / taken for count, taken in (conn.recv() for conn in self.conns))

    def close(self) -> None:
        for conn, proc in zip(self.conns, self.procs):
            conn.send(None)
            proc.join()


def make_iterator(
    case: Case,
    pattern: str,
    workers: int | None,
    batch_size: int,
    seed: int | None,
    **kwargs: Any,
) -> Any:
    """A TRAIN iterator; ``workers=None`` and ``seed=None`` leave the generator's defaults."""
    if workers is not None:
        kwargs["num_workers"] = workers
    if seed is not None:
        kwargs["seed"] = seed
    gen = DefaultRecordInputGenerator(pattern, batch_size, **kwargs)
    gen.set_feature_specifications(case.feature_spec, case.label_spec)
    dataset = gen.create_dataset(ModeKeys.TRAIN)
    assert dataset.dataloader is not None
    return iter(dataset), dataset.dataloader.num_workers


def setting(workers: int, transfer: int) -> str:
    """How a run's batches were made, for the tables."""
    if workers == 0:
        return "0 workers"
    return f"{workers} worker{'s' if workers > 1 else ''}, {transfer} per transfer"


def transfer_of(case: Case, batch_size: int, workers: int | None, **kwargs: Any) -> int:
    """Batches per transfer the generator chooses (1 without workers)."""
    if workers == 0:
        return 1
    if "batches_per_transfer" in kwargs:
        return int(kwargs["batches_per_transfer"])
    gen = DefaultRecordInputGenerator("unused", batch_size)
    parse_fn = ParseTFExampleFn(case.feature_spec, case.label_spec)
    return gen.resolve_batches_per_transfer(parse_fn)


def measure(
    case: Case,
    pattern: str,
    decoders: ParallelDecoders,
    workers: int | None,
    batch_size: int,
    seconds: float,
    windows: int = 6,
    **kwargs: Any,
) -> tuple[float, float, int]:
    """(pipeline examples/s, decode-only limit examples/s, workers used), interleaved.

    The pipeline runs in ``windows`` windows. Between them, while the DataLoader
    workers sit idle with full queues, the ``decoders`` (one plain decode loop
    per CPU) run at once: the limit on this machine at that moment (shared
    machines drift by tens of percent, and two vCPUs do not always give twice
    one).
    """
    iterator, used = make_iterator(
        case, pattern, workers, batch_size, None if workers is None else 0, **kwargs
    )
    for _ in range(max(4, 4 * used)):  # start workers, fill buffers and queues
        next(iterator)
    examples = pipeline_time = 0.0
    limits = []
    for _ in range(windows):
        began = time.perf_counter()
        while time.perf_counter() - began < seconds / windows:
            features, _ = next(iterator)
            examples += len(next(iter(features.values())))
        pipeline_time += time.perf_counter() - began
        time.sleep(0.05)  # let the workers fill their queues and go idle
        limits.append(decoders.images(min(0.5, seconds / windows)) / case.frames)
    del iterator
    return examples / pipeline_time, sum(limits) / len(limits), used


def median_run(
    case: Case,
    pattern: str,
    decoders: ParallelDecoders,
    workers: int | None,
    args: argparse.Namespace,
    **kwargs: Any,
) -> tuple[float, float, str]:
    """(median ex/s, median decode-only limit, the setting used) over ``args.repeats`` runs."""
    runs = [
        measure(case, pattern, decoders, workers, args.batch_size, args.seconds, **kwargs)
        for _ in range(args.repeats)
    ]
    rate = statistics.median(r for r, _, _ in runs)
    limit = statistics.median(lim for _, lim, _ in runs)
    transfer = transfer_of(case, args.batch_size, runs[0][2], **kwargs)
    return rate, limit, setting(runs[0][2], transfer)


def cpu_per_record(
    case: Case, pattern: str, jpegs: list[bytes], batch_size: int
) -> tuple[float, float]:
    """CPU microseconds per record: (the whole pipeline in-process, its JPEG decodes alone).

    CPU time (``time.process_time``) rather than wall time: on a shared machine it
    moves far less than rates do. The decode alone is a plain loop decoding into a
    reused buffer, ``case.frames`` images per record. No prefetch thread: one
    thread does all the work.
    """
    iterator, _ = make_iterator(case, pattern, 0, batch_size, 0, prefetch_factor=None)
    for _ in range(4):
        next(iterator)
    records = max(2048, 8 * batch_size) // case.frames
    batches = max(4, records // batch_size)
    began = time.process_time()
    for _ in range(batches):
        next(iterator)
    pipeline = (time.process_time() - began) / (batches * batch_size) * 1e6
    height, width, _, _ = simplejpeg.decode_jpeg_header(jpegs[0])
    buffer = np.empty((height, width, 3), np.uint8)
    count = min(len(jpegs), batches * batch_size * case.frames)
    began = time.process_time()
    for data in jpegs[:count]:
        simplejpeg.decode_jpeg(data, "RGB", buffer=buffer)
    decode = (time.process_time() - began) / count * 1e6 * case.frames
    return pipeline, decode


def _children_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of each child process of this one, from /proc."""
    me, tick = os.getpid(), os.sysconf("SC_CLK_TCK")
    out = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            out[int(stat.split("/")[2])] = (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_split(
    case: Case, pattern: str, batch_size: int, exclude: set[int], **kwargs: Any
) -> tuple[float, float, str]:
    """CPU us/record of the training process and of its workers, at the defaults
    (or ``kwargs``), over about 4096 records (Linux only: /proc)."""
    iterator, workers = make_iterator(case, pattern, None, batch_size, 0, **kwargs)
    for _ in range(4 * max(1, workers)):
        next(iterator)
    time.sleep(0.2)
    batches = max(64, 16384 // (batch_size * case.frames))
    before = {p: t for p, t in _children_cpu().items() if p not in exclude}
    main = time.process_time()
    for _ in range(batches):
        next(iterator)
    main = time.process_time() - main
    after = _children_cpu()
    children = sum(after.get(p, t) - t for p, t in before.items())
    records = batches * batch_size
    used = setting(workers, transfer_of(case, batch_size, workers, **kwargs))
    del iterator
    return main / records * 1e6, children / records * 1e6, used


def stage_cpu(case: Case, pattern: str, batch_size: int, repeats: int = 3) -> dict[str, float]:
    """CPU us/record of each stage in one thread (the minimum of ``repeats`` passes).

    * framing: TFRecord framing and both crc32c of every record;
    * stream: the TRAIN example stream (framing, 10 files interleaved, the
      shuffle buffer), unparsed;
    * parse w/o decode: parsing a batch of records held in memory, images left
      encoded (protobuf, numbers, the batch buffer);
    * parse: the same with JPEG decoding, as the pipeline runs it;
    * decode: the plain simplejpeg loop of ``cpu_per_record``, for comparison.
    """
    files = sorted(glob.glob(pattern))
    records = [r for f in files for _, r in read_tfrecord_with_offsets(f)]
    count = len(records) // batch_size * batch_size
    batches = [records[i : i + batch_size] for i in range(0, count, batch_size)]
    parse = ParseTFExampleFn(case.feature_spec, case.label_spec)
    encoded = ParseTFExampleFn(case.feature_spec, case.label_spec, decode_images=False)
    dataset = RecordBatchDataset(
        {"": files}, parse, batch_size, shuffle=True, repeat=True, drop_remainder=True
    )
    stream = dataset._examples(dataset._shard()[0], 0)

    def framing() -> None:
        for f in files:
            collections.deque(read_tfrecord_with_offsets(f), maxlen=0)

    stages: dict[str, Callable[[], None]] = {
        "framing": framing,
        "stream": lambda: collections.deque(itertools.islice(stream, count), maxlen=0),
        "parse w/o decode": lambda: collections.deque(map(encoded, batches), maxlen=0),
        "parse": lambda: collections.deque(map(parse, batches), maxlen=0),
    }
    times: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(repeats):
        for name, run in stages.items():
            began = time.thread_time()
            run()
            times[name].append((time.thread_time() - began) / count * 1e6)
    return {name: min(values) for name, values in times.items()}


def step_wait(case: Case, pattern: str, batch_size: int, rate: float, steps: int = 200) -> str:
    """A training step that sleeps 1.2x the pipeline's time per batch: its wait for data.

    Returns the mean wait per step and the step time, as text. With the default
    workers and prefetching, a pipeline faster than the step leaves it waiting
    only for the batch to be handed over.
    """
    step = 1.2 * batch_size / rate
    iterator, _ = make_iterator(case, pattern, None, batch_size, None)
    for _ in range(8):
        next(iterator)
    waited = 0.0
    for _ in range(steps):
        began = time.perf_counter()
        next(iterator)
        waited += time.perf_counter() - began
        time.sleep(step)
    return f"{waited / steps * 1e3:.2f} ms wait per {step * 1e3:.1f} ms step"


def tf_data_rate(case: Case, pattern: str, workers: int, batch_size: int, seconds: float) -> str:
    try:
        import tensorflow as tf  # type: ignore[import-not-found]
    except ImportError:
        return "n/a (TensorFlow not installed)"
    image_feature = tf.io.FixedLenFeature((), tf.string)
    shape = tuple(case.feature_spec[next(iter(case.feature_spec))].shape)  # type: ignore[arg-type]

    def parse(batch: Any) -> Any:
        if case.frames > 1:
            _, sequences, _ = tf.io.parse_sequence_example(
                batch,
                sequence_features={
                    case.image_key: tf.io.FixedLenSequenceFeature((), tf.string),
                    "action": tf.io.FixedLenSequenceFeature((7,), tf.float32),
                },
            )
            images = tf.map_fn(
                lambda frames: tf.map_fn(
                    lambda b: tf.io.decode_jpeg(b, 3), frames, fn_output_signature=tf.uint8
                ),
                sequences[case.image_key],
                fn_output_signature=tf.uint8,
            )
            return images, sequences["action"]
        features = {
            s.name: tf.io.FixedLenFeature(tuple(s.shape), tf.float32)
            for s in [*case.feature_spec.values(), *case.label_spec.values()]
            if s.data_format is None
        }
        features[case.image_key] = image_feature
        parsed = tf.io.parse_example(batch, features)
        parsed[case.image_key] = tf.map_fn(
            lambda b: tf.io.decode_jpeg(b, shape[-1]),
            parsed[case.image_key],
            fn_output_signature=tf.uint8,
        )
        return parsed

    files = tf.data.Dataset.list_files(pattern, shuffle=True, seed=0)
    data = files.interleave(tf.data.TFRecordDataset, cycle_length=4)
    data = data.shuffle(1000).repeat().batch(batch_size, drop_remainder=True)
    data = data.map(parse, num_parallel_calls=max(1, workers)).prefetch(2)
    iterator = iter(data)
    for _ in range(4):
        next(iterator)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(iterator)
        done += batch_size
    return f"{done / (time.perf_counter() - start):,.0f}"


def profile(case: Case, pattern: str, batch_size: int) -> None:
    """cProfile of the whole pipeline in the main process (``num_workers=0``, one thread)."""
    iterator, _ = make_iterator(case, pattern, 0, batch_size, 0, prefetch_factor=None)
    for _ in range(4):
        next(iterator)
    batches = max(50, 4096 // (batch_size * case.frames))
    profiler = cProfile.Profile()
    began = time.process_time()
    profiler.enable()
    for _ in range(batches):
        next(iterator)
    profiler.disable()
    taken = time.process_time() - began
    print(f"{taken / (batches * batch_size) * 1e6:.1f} us CPU per record under cProfile\n")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
    print(out.getvalue())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def available_cpus() -> int:
    from t2r.data.input_generators import available_cpus as cpus

    return cpus()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="a,b,c", help="which of a, b, c")
    parser.add_argument("--workers", default=None, help="worker counts to try (default 0..CPUs)")
    parser.add_argument("--batch-size", type=int, default=64, help="64: the tf.data reference's")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per run")
    parser.add_argument("--repeats", type=int, default=1, help="median of this many runs")
    parser.add_argument("--scale", type=float, default=1.0, help="scales the number of examples")
    parser.add_argument("--files", type=int, default=8, help="TFRecord files per case")
    parser.add_argument("--data-dir", default=None, help="keep the files here (default: temp)")
    parser.add_argument("--profile", default=None, help="cProfile the pipeline of one case")
    parser.add_argument("--tf", action="store_true", help="also time tf.data (if importable)")
    parser.add_argument(
        "--no-stages", action="store_true", help="skip the CPU time per stage and per process"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    cpus = available_cpus()
    cases = {c.key: c for c in make_cases(args.scale)}
    wanted = [cases[k.strip()] for k in args.cases.split(",") if k.strip()]
    worker_counts = (
        list(range(cpus + 1)) if args.workers is None else [int(w) for w in args.workers.split(",")]
    )

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(args.data_dir or tmp)
        directory.mkdir(parents=True, exist_ok=True)
        if args.profile:
            case = cases[args.profile]
            profile(case, write_case(case, directory, args.files), args.batch_size)
            return
        print(
            f"# t2r input pipeline, {datetime.date.today()}, {cpu_model()}, "
            f"{cpus} CPUs available, torch {torch.__version__}, batch {args.batch_size}, "
            f"{args.seconds:g} s per run, median of {args.repeats}\n"
        )
        rows = []
        details = []
        stage_rows: list[str] = []
        for case in wanted:
            pattern = write_case(case, directory, args.files)
            jpegs = jpegs_of(pattern, case)
            decoders = ParallelDecoders(jpegs, cpus)

            default = median_run(case, pattern, decoders, None, args)
            sweep: dict[str, tuple[float, float]] = {}
            for w in worker_counts:
                rate, limit, used = median_run(case, pattern, decoders, w, args)
                sweep[used] = (rate, limit)
                if w > 0 and transfer_of(case, args.batch_size, w) > 1:
                    one = median_run(case, pattern, decoders, w, args, batches_per_transfer=1)
                    rate, limit, used = one
                    sweep[used] = (rate, limit)
            decoders.close()
            best_setting = max(sweep, key=lambda k: sweep[k][0] / sweep[k][1])
            best = sweep[best_setting]
            pipeline_cpu, decode_cpu = cpu_per_record(case, pattern, jpegs, args.batch_size)
            rows.append(
                f"| ({case.key}) {case.title} | {default[0]:,.0f} ({default[2]}) "
                f"| {default[1]:,.0f} | {default[0] / default[1]:.0%} "
                f"| {best[0]:,.0f} ({best_setting}) | {best[0] / best[1]:.0%} "
                f"| {pipeline_cpu:.1f} / {decode_cpu:.1f} / {pipeline_cpu - decode_cpu:.1f} |"
            )
            for used, (rate, limit) in sweep.items():
                details.append(
                    f"| ({case.key}) | {used} | {rate:,.0f} | {limit:,.0f} | {rate / limit:.0%} |"
                )
            if not args.no_stages:
                stages = stage_cpu(case, pattern, args.batch_size)
                exclude = set(_children_cpu())
                main_cpu, workers_cpu, used = cpu_split(case, pattern, args.batch_size, exclude)
                split = [(used, main_cpu, workers_cpu)]
                if "per transfer" in used and not used.endswith(" 1 per transfer"):
                    one = cpu_split(case, pattern, args.batch_size, exclude, batches_per_transfer=1)
                    split.append((one[2], one[0], one[1]))
                stage_rows.append(
                    f"| ({case.key}) | {stages['framing']:.1f} | {stages['stream']:.1f} "
                    f"| {stages['parse w/o decode']:.1f} | {stages['parse']:.1f} "
                    f"| {decode_cpu:.1f} | {pipeline_cpu:.1f} | "
                    + "; ".join(f"{m:.1f} / {w:.1f} ({u})" for u, m, w in split)
                    + " |"
                )
            if case.key == "a":
                wait = step_wait(case, pattern, args.batch_size, default[0])
                details.append(f"| ({case.key}) a sleeping step | default | {wait} | | |")
            if args.tf:
                rate = tf_data_rate(case, pattern, cpus, args.batch_size, args.seconds)
                details.append(f"| ({case.key}) tf.data | AUTOTUNE | {rate} | | |")
        print(
            "| case | default ex/s | decode-only limit ex/s | default / limit "
            "| best ex/s | best / its limit | CPU us/record: pipeline / decode / fixed |"
        )
        print("|---|---|---|---|---|---|---|")
        print("\n".join(rows))
        print("\n| case | setting | ex/s | decode-only limit ex/s | ratio |")
        print("|---|---|---|---|---|")
        print("\n".join(details))
        if stage_rows:
            print(
                "\nCPU us/record by stage, one thread (min of 3 passes): framing; the TRAIN "
                "example stream (framing included); parsing batches held in memory without and "
                "with JPEG decoding; the decode alone; the whole pipeline. Then with workers: "
                "training process / workers (the CPU time of both, per record)."
            )
            print(
                "\n| case | framing | stream | parse w/o decode | parse | decode | pipeline "
                "| with workers: main / workers |"
            )
            print("|---|---|---|---|---|---|---|---|")
            print("\n".join(stage_rows))


if __name__ == "__main__":
    main()
