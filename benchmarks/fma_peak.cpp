// fma_peak.cpp: the machine's measured single-precision FMA peak, the ceiling a GEMM
// table's "% of peak" column divides by.
//
//   g++ -O2 -fopenmp benchmarks/fma_peak.cpp -o /tmp/fma_peak && /tmp/fma_peak 2
//
// Each thread runs independent chains of fused multiply-adds on registers only (no
// memory traffic), 256-bit (AVX2 + FMA) and, where the CPU has it, 512-bit (AVX-512F).
// There are more chains than an FMA's latency times the FMA ports of any current core
// (4 cycles x 2 ports = 8), so the units never wait for a result. Prints one JSON line:
// GFLOP/s (2 per lane per FMA) by width and thread count, from 1 up to the argument,
// each the best of several timed runs.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace {

constexpr long kIters = 20000000;

// Twelve named accumulators (an array would be kept in memory at -O2).
#define EMBER_CHAINS(V, SET1, FMA, ADD)                                         \
  V a0 = SET1(1.00f), a1 = SET1(1.01f), a2 = SET1(1.02f), a3 = SET1(1.03f);    \
  V a4 = SET1(1.04f), a5 = SET1(1.05f), a6 = SET1(1.06f), a7 = SET1(1.07f);    \
  V a8 = SET1(1.08f), a9 = SET1(1.09f), a10 = SET1(1.10f), a11 = SET1(1.11f);  \
  const V m = SET1(0.9999999f), c = SET1(1e-7f);                               \
  for (long it = 0; it < iters; ++it) {                                        \
    a0 = FMA(a0, m, c); a1 = FMA(a1, m, c); a2 = FMA(a2, m, c);                \
    a3 = FMA(a3, m, c); a4 = FMA(a4, m, c); a5 = FMA(a5, m, c);                \
    a6 = FMA(a6, m, c); a7 = FMA(a7, m, c); a8 = FMA(a8, m, c);                \
    a9 = FMA(a9, m, c); a10 = FMA(a10, m, c); a11 = FMA(a11, m, c);            \
  }                                                                            \
  V s = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));     \
  s = ADD(s, ADD(ADD(a8, a9), ADD(a10, a11)));

__attribute__((target("avx2,fma"))) float chains256(long iters) {
  EMBER_CHAINS(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps)
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}

__attribute__((target("avx512f"))) float chains512(long iters) {
  EMBER_CHAINS(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps)
  float out[16];
  _mm512_storeu_ps(out, s);
  return out[0];
}

// GFLOP/s of `threads` threads each running the chains, best of `runs`.
double measure(int width, int threads, int runs) {
  double best = 0;
  volatile float sink = 0;
  for (int r = 0; r < runs; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    total += width == 512 ? chains512(kIters) : chains256(kIters);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sink = sink + total;
    double flops = 2.0 * (width / 32) * 12.0 * double(kIters) * threads;
    best = std::max(best, flops / s / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int max_threads = argc > 1 ? std::atoi(argv[1]) : omp_get_max_threads();
  if (max_threads < 1) max_threads = 1;
  __builtin_cpu_init();
  bool has256 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  bool has512 = __builtin_cpu_supports("avx512f");
  std::printf("{");
  const char* sep = "";
  for (int width : {256, 512}) {
    if (!(width == 256 ? has256 : has512)) continue;
    for (int t = 1; t <= max_threads; ++t) {
      if (t != 1 && t != max_threads) continue;
      std::printf("%s\"%d/%d\": %.1f", sep, width, t, measure(width, t, 5));
      sep = ", ";
    }
  }
  std::printf("}\n");
  return 0;
}
