// parallel.cpp: thread-count settings for the OpenMP pool, and ember's helper threads.
#include "ember/parallel.h"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#ifdef EMBER_OPENMP
#include <omp.h>
#endif

namespace ember {

int get_num_threads() {
#ifdef EMBER_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

namespace {
// libgomp's worker threads do not survive a fork, but its pool still counts them: the
// child's first region with more than one thread waits forever for them. A forked
// child therefore runs every region on its one thread (the same bits, by design).
std::atomic<bool> in_forked_child{false};
void after_fork_in_child() {
  in_forked_child.store(true);
#ifdef EMBER_OPENMP
  omp_set_num_threads(1);
#endif
}
const int fork_handler_registered = pthread_atfork(nullptr, nullptr, after_fork_in_child);
}  // namespace

void set_num_threads(int n) {
  (void)fork_handler_registered;
  if (n < 1 || n > kMaxThreads)
    throw std::invalid_argument("set_num_threads: n must be in [1, " +
                                std::to_string(kMaxThreads) + "]. Received: n=" +
                                std::to_string(n));
#ifdef EMBER_OPENMP
  if (!in_forked_child.load()) omp_set_num_threads(n);
#endif
}

bool forked_child() { return in_forked_child.load(); }

bool openmp_enabled() {
#ifdef EMBER_OPENMP
  return true;
#else
  return false;
#endif
}

namespace {

inline void cpu_relax() {
#if defined(__SSE2__)
  _mm_pause();
#endif
}

// The helper threads and the job they share. Never destroyed (the helpers are
// detached and may still wait on it at exit); a forked child gets a fresh one, since
// the helpers do not exist there.
struct Helpers {
  std::mutex busy;  // held by the thread whose job the helpers run
  int started = 0;  // helpers 1 .. started exist
  void (*fn)(void*, int, int) = nullptr;
  void* ctx = nullptr;
  int threads = 0;
  alignas(64) std::atomic<uint32_t> job{0};  // bumped for each job
  alignas(64) std::atomic<int> running{0};   // helpers not yet done with it
  alignas(64) std::atomic<int> sleeping{0};
  std::atomic<bool> nap{false};  // OpenMP is in use: sleep now
  std::mutex sleep_mu;
  std::condition_variable wake;
};

std::atomic<Helpers*> helpers{nullptr};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr int64_t kOpenMPQuietNs = 10'000'000;
std::atomic<int64_t> last_openmp_ns{-kOpenMPQuietNs};

// A helper waits this long spinning before it sleeps, so that a loop of batch-1 calls
// finds it awake (a wake-up costs a single-threaded call and a futex wake).
constexpr auto kSpinFor = std::chrono::milliseconds(4);

void helper_loop(Helpers* h, int id, uint32_t seen) {
  for (;;) {
    auto spin_end = std::chrono::steady_clock::now() + kSpinFor;
    for (int spins = 1; h->job.load(std::memory_order_acquire) == seen; ++spins) {
      cpu_relax();
      if (spins % 256 == 0 && (h->nap.load(std::memory_order_relaxed) ||
                               std::chrono::steady_clock::now() > spin_end)) {
        std::unique_lock<std::mutex> lock(h->sleep_mu);
        h->sleeping.fetch_add(1);  // seq_cst, paired with the job bump in run_on_helpers
        h->wake.wait(lock, [&] { return h->job.load() != seen; });
        h->sleeping.fetch_sub(1);
        spin_end = std::chrono::steady_clock::now() + kSpinFor;
      }
    }
    seen = h->job.load(std::memory_order_acquire);
    if (id < h->threads) h->fn(h->ctx, id, h->threads);
    h->running.fetch_sub(1, std::memory_order_release);
  }
}

}  // namespace

void note_openmp_use() {
  last_openmp_ns.store(now_ns(), std::memory_order_relaxed);
  if (Helpers* h = helpers.load(std::memory_order_acquire))
    if (!h->nap.load(std::memory_order_relaxed)) h->nap.store(true, std::memory_order_relaxed);
}

bool run_on_helpers(int threads, void (*fn)(void*, int, int), void* ctx) {
  if (threads < 2 || now_ns() - last_openmp_ns.load(std::memory_order_relaxed) < kOpenMPQuietNs)
    return false;
  static std::once_flag once;
  std::call_once(once, [] {
    helpers.store(new Helpers);
    pthread_atfork(nullptr, nullptr, [] { helpers.store(new Helpers); });
  });
  Helpers* h = helpers.load();
  std::unique_lock<std::mutex> lock(h->busy, std::try_to_lock);
  if (!lock) return false;
  if (h->nap.load(std::memory_order_relaxed)) h->nap.store(false, std::memory_order_relaxed);
  for (; h->started < threads - 1; ++h->started)
    std::thread(helper_loop, h, h->started + 1, h->job.load()).detach();
  const bool asleep = h->sleeping.load() > 0;
  if (asleep || h->running.load(std::memory_order_acquire) > 0) {
    // Waking a sleeping helper can take up to a millisecond, far longer than the job:
    // post an empty job to wake them for the next one, and run this one here.
    if (asleep && h->running.load(std::memory_order_acquire) == 0) {
      h->threads = 0;
      h->running.store(h->started, std::memory_order_relaxed);
      h->job.fetch_add(1);
      std::lock_guard<std::mutex> sleep_lock(h->sleep_mu);
      h->wake.notify_all();
    }
    lock.unlock();
    fn(ctx, 0, 1);
    return true;
  }
  h->fn = fn;
  h->ctx = ctx;
  h->threads = threads;
  h->running.store(h->started, std::memory_order_relaxed);
  h->job.fetch_add(1);  // seq_cst: a helper going to sleep either sees it or is counted
  if (h->sleeping.load() > 0) {  // one fell asleep just now
    std::lock_guard<std::mutex> sleep_lock(h->sleep_mu);
    h->wake.notify_all();
  }
  fn(ctx, 0, threads);
  for (int spins = 1; h->running.load(std::memory_order_acquire) > 0; ++spins)
    if (spins < (1 << 16)) cpu_relax(); else std::this_thread::yield();
  return true;
}

}  // namespace ember
