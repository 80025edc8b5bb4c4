"""``python -m bench [--only NAME]``: run the benchmarks in order. Exits 0 when targets are
missed (each says MISSED); 1 only when a benchmark could not run at all."""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import TextIO

from bench import (
    embedding_backends,
    eval_freshness,
    eval_squad,
    eval_tasks,
    gateway_overhead,
    gateway_throughput,
    generator_multi_adapter,
    generator_overhead,
    generator_ttft,
    index_scale,
    ingest_throughput,
    peers,
    retrieval_quality,
    retriever_scaling,
    search_latency,
    traffic_loop,
    trainer_gsm8k,
    trainer_publish_latency,
    trainer_throughput,
)
from bench.common import REPO, Context

BENCHMARKS = {
    m.NAME: m
    for m in (
        retrieval_quality,
        ingest_throughput,
        embedding_backends,
        search_latency,
        index_scale,
        retriever_scaling,
        generator_overhead,
        generator_multi_adapter,
        generator_ttft,
        gateway_overhead,
        gateway_throughput,
        trainer_throughput,
        trainer_publish_latency,
        trainer_gsm8k,
        eval_squad,
        eval_tasks,
        eval_freshness,
        traffic_loop,
        peers,
    )
}


def hold_state_dir(state_dir: Path) -> TextIO | None:
    """An exclusive lock on ``state_dir`` for this process's life, or None when another run holds it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = (state_dir / ".bench.lock").open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", choices=sorted(BENCHMARKS), help="run only this benchmark")
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--state-dir", type=Path, default=REPO / ".ragtune" / "bench")
    parser.add_argument(
        "--bench-device",
        default="cpu",
        help="the device BOTH sides of ingest_throughput and trainer_throughput run on (cpu, cuda, cuda:1...);"
        " recorded in their results",
    )
    for module in BENCHMARKS.values():
        module.add_arguments(parser.add_argument_group(module.NAME))
    args = parser.parse_args(argv)
    ctx = Context(datasets=args.datasets.resolve(), state_dir=args.state_dir.resolve())
    lock = hold_state_dir(ctx.state_dir)
    if lock is None:
        print(
            f"{ctx.state_dir} is in use by another benchmark run (its database and services would be shared);"
            " wait for it or pass another --state-dir",
            file=sys.stderr,
        )
        return 2
    # SIGTERM unwinds like Ctrl-C, so every benchmark's ExitStack stops the services it started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    outcomes: dict[str, str] = {}
    for name, module in BENCHMARKS.items():
        if args.only and name != args.only:
            continue
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            outcomes[name] = "OK" if module.run(ctx, args) else "MISSED"
        except Exception:
            traceback.print_exc()
            outcomes[name] = "ERROR"
        print(f"== {name}: {outcomes[name]} in {time.perf_counter() - start:.0f}s", flush=True)
    print("summary: " + ", ".join(f"{name} {outcome}" for name, outcome in outcomes.items()))
    return 1 if "ERROR" in outcomes.values() else 0


if __name__ == "__main__":
    sys.exit(main())
