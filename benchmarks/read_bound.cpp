// read_bound.cpp: how long it takes just to read the MLP's weights once, the floor
// under batch-1 inference (every weight is used once per sample).
//
//   g++ -O2 -mavx2 -fopenmp benchmarks/read_bound.cpp -o /tmp/read_bound && /tmp/read_bound
//
// Streams the 784-512-256-10 MLP's 535,818 float32 weights (2.1 MB: more than this
// machine's 1 MB L2 per core, and each core's half is still a little more, so they
// mostly come from L3) with 1 and 2 threads, the same buffer again and again as
// repeated predict calls do, and prints the median time.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

static float read_all(const float* w, long n) {
  float total = 0.f;
#pragma omp parallel reduction(+ : total)
  {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
#pragma omp for schedule(static)
    for (long i = 0; i < n; i += 32) {
      s0 = _mm256_add_ps(s0, _mm256_load_ps(w + i));
      s1 = _mm256_add_ps(s1, _mm256_load_ps(w + i + 8));
      s2 = _mm256_add_ps(s2, _mm256_load_ps(w + i + 16));
      s3 = _mm256_add_ps(s3, _mm256_load_ps(w + i + 24));
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (float v : lanes) total += v;
  }
  return total;
}

int main() {
  const long n = (784L * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10 + 31) / 32 * 32;
  float* w = static_cast<float*>(std::aligned_alloc(64, n * sizeof(float)));
  for (long i = 0; i < n; ++i) w[i] = 1e-3f * static_cast<float>(i % 97);
  volatile float sink = 0.f;
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    std::vector<double> us;
    for (int r = 0; r < 20000; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      sink = read_all(w, n);
      us.push_back(std::chrono::duration<double, std::micro>(
                       std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(us.begin() + 5000, us.end());  // the first 5,000 reads are the warm-up
    std::printf("%d thread(s): %.1f us to read %.2f MB of weights (median)\n", threads,
                us[5000 + (us.size() - 5000) / 2], n * 4.0 / 1e6);
  }
  std::free(w);
  return sink == 12345.f;
}
