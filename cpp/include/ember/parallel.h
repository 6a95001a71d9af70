// parallel.h: the one OpenMP thread pool, and its settings.
#pragma once
#include <atomic>
#include <cstdint>
#include <thread>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace ember {

// Number of threads the kernels use (OMP_NUM_THREADS is honoured at start-up).
int get_num_threads();
// Most threads set_num_threads accepts (libgomp fails far below INT_MAX: exits at a
// few thousand, crashes at 10^5).
constexpr int kMaxThreads = 1024;
// Sets the thread count; n must be in [1, kMaxThreads]. In a process forked from one
// that used ember (or OpenMP), every region runs on one thread and n is ignored.
void set_num_threads(int n);
// True in a child forked after ember was loaded: it runs single-threaded.
bool forked_child();
// True when the core was built with OpenMP.
bool openmp_enabled();

// Runs fn(ctx, t, threads) for t = 0 .. threads - 1, t = 0 on this thread, the others on
// ember's own helper threads. Between jobs those wait spinning (4 ms, then asleep), so
// starting and ending a job costs a cache-line handoff each way, a fraction of the
// cost of an OpenMP region.
// While they sleep, a job wakes them for the next one and runs as fn(ctx, 0, 1) on
// this thread alone (a wake-up can take a millisecond). For the shortest parallel work
// only (batch-1 inference), where nothing else runs an OpenMP region around it:
// OpenMP's idle workers also spin after a region, and the two would share cores.
// Returns false, having run nothing, when threads < 2, another thread is using the
// helpers, or within 10 ms of note_openmp_use.
bool run_on_helpers(int threads, void (*fn)(void* ctx, int t, int threads), void* ctx);

// Marks work that runs OpenMP regions (call it before and after): the helper threads
// stop spinning at once, and run_on_helpers declines for the next 10 ms, while
// OpenMP's idle workers may still spin (GOMP_SPINCOUNT; a user may set it long).
void note_openmp_use();

// A barrier for the threads of one parallel region. It spins, then yields should the
// threads outnumber the cores: a cache-line handoff each way, several times cheaper
// than an OpenMP barrier or a join and a fork.
class SpinBarrier {
 public:
  void wait(int threads) {
    const int gen = gen_.load(std::memory_order_relaxed);
    if (count_.fetch_add(1, std::memory_order_acq_rel) == threads - 1) {
      count_.store(0, std::memory_order_relaxed);
      gen_.store(gen + 1, std::memory_order_release);
      return;
    }
    for (int spins = 0; gen_.load(std::memory_order_acquire) == gen; ++spins) {
      if (spins < (1 << 14)) {
#if defined(__SSE2__)
        _mm_pause();
#endif
      } else {
        std::this_thread::yield();
      }
    }
  }

 private:
  alignas(64) std::atomic<int> count_{0};
  alignas(64) std::atomic<int> gen_{0};
};

// note_openmp_use on construction and destruction, when `on`.
struct OpenMPUse {
  explicit OpenMPUse(bool on) : on_(on) {
    if (on_) note_openmp_use();
  }
  ~OpenMPUse() {
    if (on_) note_openmp_use();
  }
  OpenMPUse(const OpenMPUse&) = delete;
  OpenMPUse& operator=(const OpenMPUse&) = delete;

 private:
  bool on_;
};

}  // namespace ember
