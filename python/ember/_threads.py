"""How ember's OpenMP threads behave by default on a shared machine. Imported before
the compiled core (and with it libgomp, which reads these settings once, at load).

- Waiting: an idle OpenMP thread spins for a short while and then sleeps, instead of
  spinning for milliseconds. On a busy machine a spinning thread takes the core that the
  thread it waits for needs, and training collapses; a short spin keeps the quiet speed.
  A user's OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
- Thread count: the CPUs this process may run on (its affinity mask), capped by the
  cgroup's CPU quota (containers, CI runners), unless OMP_NUM_THREADS is set.
"""
import math
import os

# libgomp spin-waits this many iterations before it sleeps (about 0.1 ms on a current
# x86 core, where each iteration is a pause instruction).
SPIN_COUNT = "2000"


def set_wait_policy():
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT


def cgroup_cpu_limit(root="/sys/fs/cgroup"):
    """The CPU quota of this process's cgroup in whole CPUs (rounded up), or None."""
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        with open(os.path.join(root, "cpu.max")) as f:
            quota, period = f.read().split()[:2]
        if quota != "max" and int(period) > 0:
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as f:
            quota = int(f.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as f:
            period = int(f.read())
        if quota > 0 and period > 0:
            return max(1, math.ceil(quota / period))
    except (OSError, ValueError):
        pass
    return None


def default_threads():
    """CPUs in the affinity mask, capped by the cgroup quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(n, limit) if limit else n)
