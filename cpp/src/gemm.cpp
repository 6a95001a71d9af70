// gemm.cpp: the packed, cache-blocked GEMM driver (GotoBLAS/BLIS loop structure)
// around a register micro-kernel chosen at run time.
//
// Loops: jc over N in panels whose every KC block of B is packed once, up front,
// and shared by all threads; then a parallel grid of (M block, N chunk) tasks: for
// each K block, a thread packs its MC x KC block of A (or reads untransposed A in
// place) and sweeps MR x NR micro-tiles. One parallel region per panel.
// Threads split M and N only, never K, so each C element sums K in the same order
// (pc ascending, k ascending within the kernel) whatever the thread count.
#include "ember/gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "ember/buffer.h"
#include "ember/parallel.h"
#ifdef EMBER_OPENMP
#include <omp.h>
#endif

namespace ember {
namespace {

// KC x NR floats of packed B (16 KB at 256 x 16) stay in L1; MC x KC of A (about
// 150 KB) in L2; the K x NC panel of B in L3.
constexpr int64_t kMC = 144;
constexpr int64_t kKC = 256;
// Packed B panel (all of K): at most 4 M floats (16 MB), in L3.
constexpr int64_t kPanelFloats = int64_t(1) << 22;
// Split-K: C of at most kSplitKMaxC elements, K chunks of kSplitK.
constexpr int64_t kSplitKMaxC = 32768;
constexpr int64_t kSplitK = 2048;
// Small-M path: K in chunks of at most kSmallK rows of B (fixed by K, so the sum order
// never depends on the thread count), N in tiles of at most kSmallTile columns.
constexpr int64_t kSmallK = 256;
constexpr int64_t kSmallTile = 1024;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Packs rows [i0, i0+mc) x cols [p0, p0+kc) of op(A), scaled by alpha, into
// slivers of mr rows: sliver s holds kc columns of mr values, zero-padded.
void pack_a(Trans ta, const float* A, int64_t lda, int64_t i0, int64_t mc, int64_t p0,
            int64_t kc, int mr, float alpha, float* dst) {
  for (int64_t s = 0; s < mc; s += mr) {
    const int rows = static_cast<int>(std::min<int64_t>(mr, mc - s));
    float* d = dst + s * kc;
    if (ta == Trans::N) {
      for (int r = 0; r < rows; ++r) {
        const float* src = A + (i0 + s + r) * lda + p0;
        for (int64_t k = 0; k < kc; ++k) d[k * mr + r] = alpha * src[k];
      }
    } else if (alpha == 1.f && rows == 6 && mr == 6) {
      // Weight gradients (Aᵀ B): each k is a copy of 6 contiguous floats.
      for (int64_t k = 0; k < kc; ++k)
        std::memcpy(d + k * 6, A + (p0 + k) * lda + i0 + s, sizeof(float) * 6);
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = A + (p0 + k) * lda + i0 + s;
        for (int r = 0; r < rows; ++r) d[k * mr + r] = alpha * src[r];
      }
    }
    for (int r = rows; r < mr; ++r)
      for (int64_t k = 0; k < kc; ++k) d[k * mr + r] = 0.f;
  }
}

// Packs sliver jr (nr columns starting at column j0+jr) of rows [p0, p0+kc) of op(B).
void pack_b_sliver(Trans tb, const float* B, int64_t ldb, int64_t p0, int64_t kc,
                   int64_t j, int64_t cols, int nr, float* d) {
  if (tb == Trans::N && cols == nr) {
    for (int64_t k = 0; k < kc; ++k)
      std::memcpy(d + k * nr, B + (p0 + k) * ldb + j, sizeof(float) * nr);
  } else if (tb == Trans::N) {
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = B + (p0 + k) * ldb + j;
      float* dk = d + k * nr;
      int64_t c = 0;
      for (; c < cols; ++c) dk[c] = src[c];
      for (; c < nr; ++c) dk[c] = 0.f;
    }
  } else {
    for (int64_t c = 0; c < cols; ++c) {
      const float* src = B + (j + c) * ldb + p0;
      for (int64_t k = 0; k < kc; ++k) d[k * nr + c] = src[k];
    }
    for (int64_t c = cols; c < nr; ++c)
      for (int64_t k = 0; k < kc; ++k) d[k * nr + c] = 0.f;
  }
}

void apply_epilogue(const Epilogue& ep, float* C, int64_t ldc, int64_t i0, int64_t i1,
                    int64_t j0, int64_t j1) {
  for (int64_t i = i0; i < i1; ++i) {
    float* row = C + i * ldc;
    if (ep.bias)
      for (int64_t j = j0; j < j1; ++j) row[j] += ep.bias[j];
    if (ep.relu)
      for (int64_t j = j0; j < j1; ++j) row[j] = row[j] > 0.f ? row[j] : 0.f;
  }
}

void check_args(const char* who, int64_t M, int64_t N, int64_t K, int64_t lda,
                int64_t ldb, int64_t ldc, Trans ta, Trans tb) {
  if (M < 0 || N < 0 || K < 0)
    throw std::invalid_argument(std::string(who) + ": negative size (M=" +
                                std::to_string(M) + ", N=" + std::to_string(N) +
                                ", K=" + std::to_string(K) + ")");
  const int64_t a_cols = ta == Trans::N ? K : M;
  const int64_t b_cols = tb == Trans::N ? N : K;
  if (lda < std::max<int64_t>(1, a_cols) || ldb < std::max<int64_t>(1, b_cols) ||
      ldc < std::max<int64_t>(1, N))
    throw std::invalid_argument(std::string(who) + ": leading dimension too small");
}

bool use_generic_from_env() {
  const char* v = std::getenv("EMBER_GEMM_KERNEL");
  return v && std::string(v) == "generic";
}

// C (+)= alpha A B for M <= kSmallM (batch-1 inference): bound by reading B once. Each
// task streams a contiguous chunk of B's rows (one tile of columns) into its own partial
// product; the partials are added in chunk order. Chunks depend on K alone and tiles do
// not change any sum, so every thread count gives the same bits.
void small_nn(const GemmKernel& kern, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
              bool accumulate) {
  const int64_t chunks = ceil_div(K, kSmallK), kc = ceil_div(K, chunks);
  const int threads = M * N * K >= (1 << 15) ? get_num_threads() : 1;
  const int64_t tiles = std::min(ceil_div(N, 8), std::max(ceil_div(N, kSmallTile),
                                                          ceil_div(threads, chunks)));
  const int64_t tw = round_up(ceil_div(N, tiles), 8);
  float* part = C;
  int64_t ldp = ldc;
  if (chunks > 1) {
    static thread_local FloatBuffer partial;
    partial.resize(chunks * M * N);
    part = partial.data();
    ldp = N;
  }
#pragma omp parallel for schedule(static) if (threads > 1)
  for (int64_t task = 0; task < chunks * tiles; ++task) {
    const int64_t ch = task / tiles, j0 = (task % tiles) * tw;
    const int64_t k0 = ch * kc, kn = std::min(kc, K - k0);
    if (j0 >= N || kn <= 0) continue;
    // One chunk writes C directly (accumulating if asked); several write partials.
    float* dst = chunks > 1 ? part + ch * M * N + j0 : C + j0;
    kern.small_nn(M, std::min(tw, N - j0), kn, alpha, A + k0, lda, B + k0 * ldb + j0, ldb,
                  dst, ldp, chunks == 1 && accumulate);
  }
  if (chunks == 1) return;
  for (int64_t i = 0; i < M; ++i) {  // ((p0 + p1) + p2) ... then C, vectorized over j
    float* acc = part + i * N;
    for (int64_t ch = 1; ch < chunks; ++ch) {
      const float* p = part + (ch * M + i) * N;
      for (int64_t j = 0; j < N; ++j) acc[j] += p[j];
    }
    float* c = C + i * ldc;
    for (int64_t j = 0; j < N; ++j) c[j] = accumulate ? c[j] + acc[j] : acc[j];
  }
}

}  // namespace

const GemmKernel* gemm_kernel_avx2();  // defined where the AVX2 kernel is compiled

const GemmKernel& gemm_kernel() {
  static const GemmKernel* k = [] {
    if (!use_generic_from_env()) {
      if (const GemmKernel* fast = gemm_kernel_avx2()) return fast;
    }
    return &gemm_kernel_generic();
  }();
  return *k;
}

void sgemm(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
           float* C, int64_t ldc, const Epilogue* epilogue) {
  check_args("sgemm", M, N, K, lda, ldb, ldc, ta, tb);
  if (M == 0 || N == 0) return;

  // C = beta * C first when beta is neither 0 nor 1, so the kernel only ever
  // overwrites (first K block, beta 0) or accumulates.
  const bool scale_c = beta != 0.f && beta != 1.f;
  if (scale_c || K == 0 || alpha == 0.f) {
    for (int64_t i = 0; i < M; ++i) {
      float* row = C + i * ldc;
      if (beta == 0.f)
        std::memset(row, 0, sizeof(float) * N);
      else if (beta != 1.f)
        for (int64_t j = 0; j < N; ++j) row[j] *= beta;
    }
    if (K == 0 || alpha == 0.f) {
      if (epilogue) apply_epilogue(*epilogue, C, ldc, 0, M, 0, N);
      return;
    }
  }

  const GemmKernel& kern = gemm_kernel();
  if (M <= kSmallM && ta == Trans::N && tb == Trans::N) {
    small_nn(kern, M, N, K, alpha, A, lda, B, ldb, C, ldc, beta != 0.f);
    if (epilogue) apply_epilogue(*epilogue, C, ldc, 0, M, 0, N);
    return;
  }
  // A small C over a long K (the weight gradient of a first conv layer is 27 x 32
  // summed over 57,600 rows): splitting M and N would leave threads idle, so split K
  // into fixed chunks, one thread's each, and add their partial products in chunk
  // order. The chunking depends on K alone: still the same sum for any thread count.
  if (M * N <= kSplitKMaxC && K >= 2 * kSplitK) {
    const int64_t chunks = ceil_div(K, kSplitK);
    static thread_local FloatBuffer partial;
    partial.resize(chunks * M * N);
    float* part = partial.data();
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const int64_t k0 = ch * kSplitK, kc = std::min(kSplitK, K - k0);
      const float* a = ta == Trans::N ? A + k0 : A + k0 * lda;
      const float* b = tb == Trans::N ? B + k0 * ldb : B + k0;
      // Nested inside this region, sgemm runs on the calling thread alone.
      sgemm(ta, tb, M, N, kc, alpha, a, lda, b, ldb, 0.f, part + ch * M * N, N);
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < M; ++i) {
      float* row = C + i * ldc;
      for (int64_t j = 0; j < N; ++j) {
        float acc = part[i * N + j];
        for (int64_t ch = 1; ch < chunks; ++ch) acc += part[(ch * M + i) * N + j];
        row[j] = beta == 0.f ? acc : acc + row[j];  // beta is 0 or 1 here
      }
    }
    if (epilogue) apply_epilogue(*epilogue, C, ldc, 0, M, 0, N);
    return;
  }

  const int mr = kern.mr, nr = kern.nr;
  const int threads = get_num_threads();
  // Untransposed A with alpha 1 is read in place: its rows already are what a packed
  // sliver would hold, k contiguous.
  const bool direct_a = ta == Trans::N && alpha == 1.f;

  // Panels of B: all of K, at most kPanelFloats, at least one sliver wide.
  const int64_t nc_max = std::min(round_up(N, nr),
                                  std::max<int64_t>(nr, kPanelFloats / K / nr * nr));
  // Task grid: M blocks of at most kMC rows, sized so every thread gets the same
  // number of equal blocks; N chunks as well when M alone cannot feed every thread.
  const int64_t rows_per_thread = ceil_div(M, threads);
  const int64_t blocks_per_thread = ceil_div(rows_per_thread, kMC);
  int64_t mc = round_up(ceil_div(rows_per_thread, blocks_per_thread), mr);
  int64_t mblocks = ceil_div(M, mc);
  // A few rows (batch-1 convolutions: 16 x 64 x 576) split unevenly by M; when
  // splitting N instead gives a thread fewer micro-tiles, keep M whole.
  if (M <= kMC && threads > 1) {
    const int64_t slivers = ceil_div(std::min(N, nc_max), nr);
    const int64_t by_m = ceil_div(mblocks, threads) * ceil_div(mc, mr) *
                         ceil_div(slivers, std::max<int64_t>(1, ceil_div(threads, mblocks)));
    const int64_t by_n = ceil_div(M, mr) * ceil_div(slivers, threads);
    if (by_n < by_m) {
      mc = round_up(M, mr);
      mblocks = 1;
    }
  }

  // K in equal blocks of at most kKC (784 = 4 x 196, not 3 x 256 + 16): a short
  // last block would cost a full pass over C for little work. The split depends on
  // K alone, so the summation order never depends on the thread count.
  const int64_t kstep = ceil_div(K, ceil_div(K, kKC));
  const int64_t kblocks = ceil_div(K, kstep);
  // Every K block of a panel of B is packed up front (panels narrowed so that stays
  // under kPanelFloats), then each thread runs its tasks through all K blocks: one
  // parallel region and one barrier per panel, whatever K is.
  static thread_local FloatBuffer b_pack;
  b_pack.resize(K * nc_max);
  float* bp = b_pack.data();

  for (int64_t jc = 0; jc < N; jc += nc_max) {
    const int64_t nc = std::min(nc_max, N - jc);
    const int64_t slivers = ceil_div(nc, nr);
    const int64_t ncr = slivers * nr;
    const int64_t nchunks =
        std::max<int64_t>(1, std::min<int64_t>(slivers, ceil_div(threads, mblocks)));
    const int64_t per_chunk = ceil_div(slivers, nchunks);
    const int64_t tasks = mblocks * nchunks;
    // Sliver s of K block p (rows [pc, pc + kc)) sits at bp + pc * ncr + s * kc * nr.
#pragma omp parallel
    {
#pragma omp for schedule(static)
      for (int64_t idx = 0; idx < kblocks * slivers; ++idx) {
        const int64_t pc = idx / slivers * kstep, s = idx % slivers;
        const int64_t kc = std::min(kstep, K - pc), j = jc + s * nr;
        pack_b_sliver(tb, B, ldb, pc, kc, j, std::min<int64_t>(nr, N - j), nr,
                      bp + pc * ncr + s * kc * nr);
      }
      static thread_local FloatBuffer a_pack;
      if (!direct_a) a_pack.resize(round_up(mc, mr) * kstep);
      float* ap = a_pack.data();
#pragma omp for schedule(static)
      for (int64_t t = 0; t < tasks; ++t) {
        const int64_t ib = t / nchunks, ch = t % nchunks;
        const int64_t i0 = ib * mc, mrows = std::min(mc, M - i0);
        const int64_t s0 = ch * per_chunk, s1 = std::min(slivers, s0 + per_chunk);
        if (s0 >= s1) continue;
        for (int64_t pc = 0; pc < K; pc += kstep) {
          const int64_t kc = std::min(kstep, K - pc);
          const bool accumulate = pc > 0 || beta != 0.f;
          // The epilogue is applied by the kernel as it stores the last K block.
          const bool last = pc + kc == K;
          const float* bias = last && epilogue ? epilogue->bias : nullptr;
          const bool relu = last && epilogue && epilogue->relu;
          if (!direct_a) pack_a(ta, A, lda, i0, mrows, pc, kc, mr, alpha, ap);
          for (int64_t s = s0; s < s1; ++s) {
            const int64_t j = jc + s * nr;
            const int n = static_cast<int>(std::min<int64_t>(nr, N - j));
            const float* b = bp + pc * ncr + s * kc * nr;
            for (int64_t ir = 0; ir < mrows; ir += mr) {
              const int m = static_cast<int>(std::min<int64_t>(mr, mrows - ir));
              float* c = C + (i0 + ir) * ldc + j;
              const float* bj = bias ? bias + j : nullptr;
              if (direct_a)
                kern.run_rows(kc, A + (i0 + ir) * lda + pc, lda, b, c, ldc, m, n, accumulate,
                              bj, relu);
              else
                kern.run(kc, ap + ir * kc, b, c, ldc, m, n, accumulate, bj, relu);
            }
          }
        }
      }
    }
  }
}

void sgemm_ref(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
               float* C, int64_t ldc, const Epilogue* epilogue) {
  check_args("sgemm_ref", M, N, K, lda, ldb, ldc, ta, tb);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      float acc = 0.f;
      for (int64_t k = 0; k < K; ++k) {
        const float a = ta == Trans::N ? A[i * lda + k] : A[k * lda + i];
        const float b = tb == Trans::N ? B[k * ldb + j] : B[j * ldb + k];
        acc += a * b;
      }
      float& c = C[i * ldc + j];
      c = alpha * acc + (beta == 0.f ? 0.f : beta * c);
    }
  if (epilogue) apply_epilogue(*epilogue, C, ldc, 0, M, 0, N);
}

}  // namespace ember
