"""The local cluster supervisor, `python -m clickstream.cluster`: N dataflow processes as one.

    python -m clickstream.cluster --processes 2 [--workers 1] [--recovery DIR --snapshot 5]

Each process is `python -m bytewax.run dataflows.clickstream:flow -i I -a ADDRESSES`, with its
own metrics port (3030 + I). Processes, not threads, are the unit of speed: a process's
workers share one GIL. The supervisor restarts the whole cluster when a process exits with
RESTART_STATUS, which is how a process asks for it: the input topic got more partitions
(`io.watchers.PartitionWatcher`), so the partition assignment must be rebuilt. It resumes from the
recovery store, so nothing is lost or duplicated. Any other failure stops the cluster with the
failing process's status; SIGINT/SIGTERM stop it cleanly.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from typing import List, Optional

from clickstream.runtime.exits import RESTART_STATUS


def commands(args) -> List[List[str]]:
    addresses = ";".join(f"127.0.0.1:{args.base_port + i}" for i in range(args.processes))
    recovery = (["-r", args.recovery, "-s", str(args.snapshot), "-b", "0"] if args.recovery
                else ["-s", str(args.snapshot)])
    cluster = ["-i", "{i}", "-a", addresses] if args.processes > 1 else []
    return [[sys.executable, "-m", "bytewax.run", args.flow,
             "-w", str(args.workers), *[a.replace("{i}", str(i)) for a in cluster], *recovery]
            for i in range(args.processes)]


def start(args) -> List[subprocess.Popen]:
    processes = []
    for i, command in enumerate(commands(args)):
        env = dict(os.environ, BYTEWAX_DATAFLOW_API_ENABLED="true",
                   BYTEWAX_DATAFLOW_API_PORT=str(args.metrics_port + i))
        processes.append(subprocess.Popen(command, env=env))
    return processes


def stop_all(processes: List[subprocess.Popen], sig=signal.SIGTERM, timeout: float = 15) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(sig)
    deadline = time.monotonic() + timeout
    for p in processes:
        try:
            p.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def supervise(args) -> int:
    stopping: List[int] = []

    def on_signal(number, _frame):
        stopping.append(number)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    processes = start(args)
    restarts = 0
    while True:
        time.sleep(0.2)
        if stopping:
            stop_all(processes, signal.SIGTERM)
            return 128 + stopping[0]
        statuses = [p.poll() for p in processes]
        failed: Optional[int] = next((s for s in statuses if s not in (None, 0)), None)
        if failed is None:
            if all(s == 0 for s in statuses):
                return 0  # a bounded run finished
            continue
        stop_all(processes)
        # The process that asks for a restart exits first; the others can die of its absence
        # (Bytewax's communication thread panics, status 1) before their own watcher sees the
        # new partitions, and may be the first one polled here: any RESTART_STATUS counts.
        statuses = [p.returncode for p in processes]
        if RESTART_STATUS in statuses and restarts < args.max_restarts:
            restarts += 1
            print(f"clickstream.cluster: restarting all {args.processes} process(es) "
                  f"(restart {restarts})", file=sys.stderr, flush=True)
            processes = start(args)
            continue
        return failed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clickstream.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="workers per process")
    parser.add_argument("--recovery", help="recovery store directory (shared by the processes)")
    parser.add_argument("--snapshot", type=int, default=5, help="snapshot interval, whole seconds")
    parser.add_argument("--base-port", type=int, default=2101, help="first cluster port")
    parser.add_argument("--metrics-port", type=int, default=3030, help="first metrics port")
    parser.add_argument("--max-restarts", type=int, default=100)
    parser.add_argument("--flow", default="dataflows.clickstream:flow",
                        help="bytewax import string (the benchmark wraps the flow to time it)")
    args = parser.parse_args(argv)
    if args.processes < 1 or args.workers < 1:
        parser.error("--processes and --workers must be at least 1")
    return supervise(args)


if __name__ == "__main__":
    sys.exit(main())
