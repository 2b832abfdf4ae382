"""A threaded job runner that reassigns work when a worker node dies.

    python examples/job_runner.py

The runner starts WORKERS worker processes (multiprocessing, "spawn" start method:
never fork a process whose ZeroMQ threads run). Each runs its own zenmon node with
one process registered as "worker", and takes jobs from a pipe. The runner monitors
every worker by ("worker", address), so zenmon tells it when a worker node dies,
whatever the cause. To show it, the runner
SIGKILLs one worker by pid; that worker's unfinished jobs go to the others.
"""

import multiprocessing
import os
import signal
import threading
import time

import zenmon

# Fast sweeps and a short heartbeat so the example finishes quickly. Nodes that
# talk to each other must share the heartbeat settings.
SETTINGS = {"connector_sweep_interval": 10, "batcher_sweep_interval": 10,
            "demand_interval": 10, "heartbeat_interval": 100, "heartbeat_timeout": 500}
WORKERS, JOBS = 3, 12


def worker_main(conn):
    with zenmon.Node(**SETTINGS) as node:
        node.process(name="worker")          # what the runner monitors
        conn.send(node.address)
        while (job := conn.recv()) is not None:
            time.sleep(0.05)                 # the work
            conn.send(job)


def reader(runner, index, conn):
    # One thread per worker: its results become messages in the runner's inbox
    # (Process.send may be called from any thread).
    try:
        while True:
            runner.send(("done", index, conn.recv()))
    except (EOFError, OSError):
        pass                                 # the worker is gone: zenmon says so


def main():
    context = multiprocessing.get_context("spawn")
    with zenmon.Node(**SETTINGS) as node:
        runner = node.process()
        workers, pending, refs = {}, {}, {}  # by worker index
        for index in range(WORKERS):
            conn, child_conn = context.Pipe()
            worker = context.Process(target=worker_main, args=(child_conn,), daemon=True)
            worker.start()
            refs[runner.monitor(("worker", conn.recv()))] = index
            workers[index], pending[index] = (worker, conn), set()
            threading.Thread(target=reader, args=(runner, index, conn), daemon=True).start()

        def assign(job):                     # to the least loaded live worker
            index = min(workers, key=lambda i: len(pending[i]))
            pending[index].add(job)
            workers[index][1].send(job)

        for job in range(JOBS):
            assign(job)
        done, killed = [], False
        while len(done) < JOBS:
            message = runner.receive(timeout=30)
            if isinstance(message, zenmon.Down):     # a worker node died
                index = refs.pop(message.ref)
                jobs = sorted(pending.pop(index))
                print(f"worker {index} down ({message.reason}), reassigning jobs {jobs}")
                workers.pop(index)[0].join(timeout=10)
                for job in jobs:
                    assign(job)
                continue
            _, index, job = message
            pending.get(index, set()).discard(job)
            if job not in done:              # a job may be redone if its worker died
                done.append(job)             # before its result was read
            if not killed and index == 0 and len(pending[0]) > 1:   # kill it mid-work
                killed = True
                print(f"killing worker 0 (pid {workers[0][0].pid}) with jobs {sorted(pending[0])}")
                os.kill(workers[0][0].pid, signal.SIGKILL)
        print(f"all {JOBS} jobs done: {sorted(done) == list(range(JOBS))}")
        for worker, conn in workers.values():        # the survivors finish cleanly
            conn.send(None)
            worker.join(timeout=10)


if __name__ == "__main__":
    main()
