"""Python's concurrent.futures on the workloads of benches/compare.rs.

Run by `cargo bench --bench compare` as a subprocess (`python3 benches/python_peers.py`);
it can be run alone too. Derived from the anchor scripts python_cf_bench.py and
python_cf_spawn_bench.py (shared/anchors/): same task functions, same pool sizes (WORKERS,
default 2), same task counts where the anchors have them.

Every figure goes to stdout as one machine-parseable line, `<ID> <value>` (the value is a
float, in the unit named in the comment beside it), plus `N <ID> <tasks>` for the task count
used and `# ...` lines of commentary. compare.rs reads the `<ID> <value>` and `N` lines.
"""
import concurrent.futures as cf
import multiprocessing as mp
import os
import sys
import threading
import time


def square_number(x):
    return x ** 2


def echo(b):
    return b


def wait_for_file(path):
    """Blocks a worker until `path` exists (the gate of W8)."""
    while not os.path.exists(path):
        time.sleep(0.001)


def out(key, value, n=None):
    print(f"{key} {value:.6g}", flush=True)
    if n is not None:
        print(f"N {key} {n}", flush=True)


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def fd_count():
    return len(os.listdir("/proc/self/fd"))


# W1: thread pool, submit + as_completed (tasks/s)
def w1(n, workers):
    def run():
        with cf.ThreadPoolExecutor(max_workers=workers) as ex:
            fs = [ex.submit(square_number, i) for i in range(n)]
            s = sum(f.result() for f in cf.as_completed(fs))
        assert s == sum(i * i for i in range(n))

    out("W1", n / timed(run), n)


# W2: thread pool, map (tasks/s)
def w2(n, workers):
    def run():
        with cf.ThreadPoolExecutor(max_workers=workers) as ex:
            s = sum(ex.map(square_number, range(n)))
        assert s == sum(i * i for i in range(n))

    out("W2", n / timed(run), n)


# W3: process pool, submit + as_completed (tasks/s)
def w3(n, workers):
    def run():
        with cf.ProcessPoolExecutor(max_workers=workers) as ex:
            fs = [ex.submit(square_number, i) for i in range(n)]
            s = sum(f.result() for f in cf.as_completed(fs))
        assert s == sum(i * i for i in range(n))

    out("W3", n / timed(run), n)


# W4: process pool, map with chunksize (tasks/s)
def w4(n, workers, chunksize):
    def run():
        with cf.ProcessPoolExecutor(max_workers=workers) as ex:
            s = sum(ex.map(square_number, range(n), chunksize=chunksize))
        assert s == sum(i * i for i in range(n))

    out("W4", n / timed(run), n)


# W5: process pool, echo of 1 MiB (tasks/s and MiB/s)
def w5(n, workers, size):
    payload = b"x" * size

    def run():
        with cf.ProcessPoolExecutor(max_workers=workers) as ex:
            fs = [ex.submit(echo, payload) for _ in range(n)]
            total = sum(len(f.result()) for f in fs)
        assert total == n * size

    dt = timed(run)
    out("W5", n / dt, n)
    out("W5MIB", n * size / (1 << 20) / dt)


# W6: process pool construct + first result + shutdown (ms), per start method; the median
# of `reps` runs.
def w6(workers, reps):
    for method in ["spawn", "fork", "forkserver"]:
        try:
            ctx = mp.get_context(method)
        except ValueError:
            continue
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
                assert ex.submit(square_number, 3).result() == 9
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        out(f"W6_{method}", times[len(times) // 2])


# W7: warm process pool, one task's round trip, sequential (µs, p50 and p99)
def w7(n, workers):
    with cf.ProcessPoolExecutor(max_workers=workers) as ex:
        for i in range(50):  # warm: every worker started and serving
            ex.submit(square_number, i).result()
        lat = []
        for i in range(n):
            t = time.perf_counter()
            assert ex.submit(square_number, i).result() == i * i
            lat.append((time.perf_counter() - t) * 1e6)
    lat.sort()
    out("W7P50", lat[len(lat) // 2], n)
    out("W7P99", lat[min(len(lat) - 1, (len(lat) * 99) // 100)], n)


# W8: RSS per pending future on the thread pool (bytes), descriptors per pending task on the
# process pool (count). The pool's workers are blocked on a gate while the tasks are submitted.
def w8_threads(n, workers):
    gate = threading.Event()
    with cf.ThreadPoolExecutor(max_workers=workers) as ex:
        blockers = [ex.submit(gate.wait) for _ in range(workers)]
        time.sleep(0.05)
        before = rss_bytes()
        fs = [ex.submit(square_number, i) for i in range(n)]
        after = rss_bytes()
        gate.set()
        for f in blockers + fs:
            f.result()
    out("W8RSS", (after - before) / n, n)


def w8_processes(n, workers):
    gate = f"/tmp/python-peers-gate-{os.getpid()}"
    try:
        with cf.ProcessPoolExecutor(max_workers=workers) as ex:
            blockers = [ex.submit(wait_for_file, gate) for _ in range(workers)]
            time.sleep(0.5)  # the workers start and pick the blockers up
            before = fd_count()
            fs = [ex.submit(square_number, i) for i in range(n)]
            after = fd_count()
            open(gate, "w").close()
            for f in blockers + fs:
                f.result()
    finally:
        if os.path.exists(gate):
            os.remove(gate)
    out("W8FD", (after - before) / n, n)


if __name__ == "__main__":
    w = int(os.environ.get("WORKERS", "2"))
    print(f"# python {sys.version.split()[0]} workers={w}", flush=True)
    print(f"PYVERSION {sys.version.split()[0]}", flush=True)
    w1(100_000, w)
    w2(100_000, w)
    w3(20_000, w)
    w4(1_000_000, w, 1000)
    w5(200, w, 1 << 20)
    w6(w, 3)
    w7(2_000, w)
    w8_threads(200_000, w)
    w8_processes(20_000, w)
    print("# done", flush=True)
