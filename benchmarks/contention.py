"""Training and inference on a busy machine: how much of its quiet speed each framework
keeps while another process spins on one core, and two ember trainings at once.

    python benchmarks/contention.py [--frameworks ember torch] [--repeats 3]
                                    [--workloads mlp cnn text infer] [--threads 2]

Each measurement is one of run.py's workers in a fresh process (same workloads, same
settings). For every (framework, workload) the quiet run and the busy run alternate;
the busy one has a `while True: pass` process beside it, started before and killed
after by this script. "kept" is busy / quiet throughput (for latency: quiet / busy) in
the same repeat; the table gives medians over the repeats. With --baseline-env (e.g.
GOMP_SPINCOUNT=300000, libgomp's own default), ember's quiet runs are repeated under that
setting, alternating, and the quiet ratio is printed too. Last, two ember MLP trainings
run at once, each with default settings, against the same two one after the other.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402
from common import cpu_name  # noqa: E402

METRIC = {"mlp": "mlp train samples/s", "cnn": "cnn train samples/s",
          "text": "text train samples/s", "infer": "mlp batch-1 latency us (predict)"}


class Spinner:
    """A process that keeps one core busy while it lives."""

    def __enter__(self):
        self.p = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.3)
        return self

    def __exit__(self, *exc):
        self.p.kill()
        self.p.wait()


def worker_command(fw, workload, threads):
    return [sys.executable, run.__file__, "--worker", fw, workload, "--threads", str(threads)]


def worker_env(threads):
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3",
               OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.pop("OMP_NUM_THREADS", None)  # each framework's own default thread count
    return env


def measure(fw, workload, threads, extra_env=None):
    env = dict(worker_env(threads), **(extra_env or {}))
    proc = subprocess.run(worker_command(fw, workload, threads), env=env,
                          capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])[METRIC[workload]]
    raise RuntimeError(f"{fw} {workload} failed:\n{proc.stderr[-2000:]}")


def two_at_once(threads, extra_env=None):
    """(seconds for two ember MLP trainings one after the other, seconds for both at
    once): wall time of whole worker processes."""
    cmd = worker_command("ember", "mlp", threads)
    env = dict(worker_env(threads), **(extra_env or {}))
    t = time.perf_counter()
    for _ in range(2):
        subprocess.run(cmd, env=env, capture_output=True, check=True)
    sequential = time.perf_counter() - t
    t = time.perf_counter()
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise RuntimeError(err.decode()[-2000:])
    return sequential, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frameworks", nargs="+", default=["ember", "torch"])
    ap.add_argument("--workloads", nargs="+", default=["mlp", "cnn", "text", "infer"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-pair", action="store_true", help="skip the two-process run")
    ap.add_argument("--pair-only", action="store_true", help="only the two-process run")
    ap.add_argument("--baseline-env", default=None,
                    help="NAME=VALUE: also run ember quiet under this setting, alternating")
    args = ap.parse_args()
    base_env = dict([args.baseline_env.split("=", 1)]) if args.baseline_env else None
    fws = [fw for fw in args.frameworks if run.available(fw)]
    print(f"{time.strftime('%Y-%m-%d')}, {cpu_name()}, {os.cpu_count()} CPUs, "
          f"{args.threads} threads, GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}", flush=True)
    results = {(fw, wl): {"quiet": [], "busy": [], "kept": [], "vs base": []}
               for fw in fws for wl in args.workloads}
    for rep in range(0 if args.pair_only else args.repeats):
        for wl in args.workloads:
            for fw in fws:
                quiet = measure(fw, wl, args.threads)
                with Spinner():
                    busy = measure(fw, wl, args.threads)
                kept = quiet / busy if wl == "infer" else busy / quiet
                r = results[(fw, wl)]
                if base_env and fw == "ember":
                    base = measure(fw, wl, args.threads, base_env)
                    again = measure(fw, wl, args.threads)
                    mean = (quiet + again) / 2
                    r["vs base"].append(base / mean if wl == "infer" else mean / base)
                    print(f"  repeat {rep + 1}: {fw:6s} {wl:5s} quiet under {args.baseline_env}"
                          f" {base:10.1f}, default again {again:10.1f}", flush=True)
                r["quiet"].append(quiet)
                r["busy"].append(busy)
                r["kept"].append(kept)
                print(f"  repeat {rep + 1}: {fw:6s} {wl:5s} quiet {quiet:10.1f}  busy "
                      f"{busy:10.1f}  kept {kept:6.1%}", flush=True)
    if not args.pair_only:
        print(f"\n| workload | framework | quiet | one busy core | kept (median of "
              f"{args.repeats}) |\n|---|---|---|---|---|")
    for wl in ([] if args.pair_only else args.workloads):
        for fw in fws:
            r = results[(fw, wl)]
            unit = "us (batch-1 latency)" if wl == "infer" else "samples/s"
            print(f"| {wl} | {fw} | {statistics.median(r['quiet']):,.1f} {unit} | "
                  f"{statistics.median(r['busy']):,.1f} | {statistics.median(r['kept']):.1%} "
                  f"[{min(r['kept']):.1%}, {max(r['kept']):.1%}] |")
    if base_env and not args.pair_only:
        print(f"\nember quiet, default settings / {args.baseline_env} (medians; > 1 is "
              f"faster by default):")
        for wl in args.workloads:
            v = results[("ember", wl)]["vs base"]
            if v:
                print(f"  {wl}: {statistics.median(v):.3f} [{min(v):.3f}, {max(v):.3f}]")
    if not args.no_pair and "ember" in fws:
        for label, extra in (("default settings", None), (args.baseline_env, base_env)):
            if label is None:
                continue
            ratios = []
            for _ in range(args.repeats):
                seq, both = two_at_once(args.threads, extra)
                ratios.append(both / seq)
                print(f"  two ember MLP trainings ({label}): one after the other {seq:.1f} s, "
                      f"at once {both:.1f} s ({both / seq:.2f}x)", flush=True)
            print(f"two ember trainings at once / one after the other ({label}): median "
                  f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}, {max(ratios):.2f}]")


if __name__ == "__main__":
    main()
