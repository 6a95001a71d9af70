// core_to_core.cpp: the round trip of a cache line between CPUs 0 and 1, to label a
// benchmark run with the machine's state.
//
//   g++ -O2 benchmarks/core_to_core.cpp -o /tmp/core_to_core -lpthread && /tmp/core_to_core
//
// Two CPUs that share an L3 bounce a line in tens of nanoseconds; on a virtual machine
// whose two vCPUs may be placed on different L3 domains the round trip can be several
// times longer. Every cross-thread exchange (a fork, a barrier, a partial sum, data one
// thread wrote and the other reads) then costs that much more, and two-thread timings
// of ember, PyTorch and OpenBLAS all move with it: run this before and after a
// benchmark to know which case its figures come from.
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

namespace {

alignas(64) std::atomic<int> ball{0};

bool pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

}  // namespace

int main() {
  constexpr int kTrips = 200000;
  bool pinned_other = false;
  std::thread other([&] {
    pinned_other = pin(1);
    for (int i = 0; i < kTrips; ++i) {
      while (ball.load(std::memory_order_acquire) != 2 * i + 1) {
      }
      ball.store(2 * i + 2, std::memory_order_release);
    }
  });
  const bool pinned = pin(0);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kTrips; ++i) {
    ball.store(2 * i + 1, std::memory_order_release);
    while (ball.load(std::memory_order_acquire) != 2 * i + 2) {
    }
  }
  const std::chrono::duration<double, std::nano> dt = std::chrono::steady_clock::now() - t0;
  other.join();
  if (!pinned || !pinned_other) std::printf("(could not pin to CPUs 0 and 1)\n");
  std::printf("core-to-core round trip: %.0f ns\n", dt.count() / kTrips);
  return 0;
}
