// gemm.cpp: the packed, cache-blocked GEMM driver (GotoBLAS/BLIS loop structure)
// around a register micro-kernel chosen at run time.
//
// Loops: jc over N in panels whose every KC block of B is packed once, up front,
// and shared by all threads; then a parallel grid of (M block, N chunk) tasks: for
// each K block, a thread packs its MC x KC block of A (or reads untransposed A in
// place) and sweeps MR x NR micro-tiles. One parallel region per panel.
// sgemm_lines runs the same loops over a matrix that is never formed (a convolution's
// patch matrix): rows are read in place segment by segment, columns packed from them.
// Threads split M and N only, never K, so each C element sums K in the same order
// (pc ascending, k ascending within the kernel) whatever the thread count.
#include "ember/gemm.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ember/buffer.h"
#include "ember/parallel.h"
#include "ember/vector_isa.h"
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#ifdef EMBER_OPENMP
#include <omp.h>
#endif

namespace ember {

namespace {
thread_local bool t_serial = false;  // set by SerialGemm
}

SerialGemm::SerialGemm(bool on) : prev_(t_serial) { t_serial = t_serial || on; }
SerialGemm::~SerialGemm() { t_serial = prev_; }
namespace {

// KC x NR floats of packed B (25 KB at 400 x 16) stay in L1; MC x KC of A (about
// 230 KB) in L2; the K x NC panel of B in L3. (KC 256 measured 5-8% slower on the
// MLP's 784- and 512-deep products, which it cut into 4 and 2 blocks; 512 slower at
// 1024, where the sliver of B fills L1.)
constexpr int64_t kMC = 144;
constexpr int64_t kKC = 400;
// A K of up to this is one block (512 deep: 2% faster whole than as 2 x 256).
constexpr int64_t kKCWhole = 512;
// A row stride of A (in floats) that maps rows to the same L1 sets: pack A then.
constexpr int64_t kAliasFloats = 512;
// Rows of untransposed B packed together (their lines stay in L1 meanwhile).
constexpr int64_t kPackRows = 8;
// Packed B panel (all of K): at most 4 M floats (16 MB), in L3.
constexpr int64_t kPanelFloats = int64_t(1) << 22;
// A panel of at most this many floats (256 KB) may be packed by every thread for itself.
constexpr int64_t kPrivateBFloats = int64_t(1) << 16;
// Split-K: C of at most kSplitKMaxC elements (256 KB: a thread's partial stays in its
// L2), K chunks of at most kSplitK, their count a multiple of kSplitKRound.
constexpr int64_t kSplitKMaxC = 65536;
constexpr int64_t kSplitK = 2048;
constexpr int64_t kSplitKRound = 4;
// The partial products together: at most this many floats (16 MB); a longer K makes
// longer chunks.
constexpr int64_t kSplitKPartialFloats = int64_t(1) << 22;
// Small-M path: K in chunks of at most kSmallK rows of B (fixed by K, so the sum order
// never depends on the thread count), N in tiles of at most kSmallTile columns.
constexpr int64_t kSmallK = 256;
constexpr int64_t kSmallTile = 1024;
// Narrow paths (N <= kNarrowN): rows of C per task (a multiple of the kernels' 16 and
// 4); the A·B form needs a K of at least kNarrowMinK (shorter dots are mostly their
// final sums).
constexpr int64_t kNarrowRows = 32;
constexpr int64_t kNarrowMinK = 32;
// The narrow and short-K paths split a product over the threads from this many
// multiply-adds. An output layer's products (128 x 10 x 256: 330 K) stay on one thread:
// split, their fork and join cost as much as the work when the cores do not share an
// L3, and on one thread they are ahead of OpenBLAS either way.
constexpr int64_t kNarrowSplitMacs = int64_t(1) << 19;
// Short-K path: K of at most kShortK (the AVX2 kernel then keeps C in registers for
// the whole K, where the 16-wide tiles would store and reload it).
constexpr int64_t kShortK = 16;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// body(0) ... body(count - 1), split over the threads when `parallel`, else on this
// thread with no OpenMP construct at all (even a one-thread team costs a microsecond).
template <class Body>
void for_each_task(int64_t count, bool parallel, const Body& body) {
  if (parallel) {
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < count; ++t) body(t);
  } else {
    for (int64_t t = 0; t < count; ++t) body(t);
  }
}
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

// Packs rows [0, rows) of untransposed B (nc columns from src, row stride ldb) into
// their place in every sliver of a K block of kc rows: sliver s's part starts at
// dst + s * kc * nr, rows nr floats apart, zero-padded past nc.
void pack_b_rows(const float* src, int64_t ldb, int64_t rows, int64_t nc, int nr, int64_t kc,
                 float* dst) {
  int64_t j = 0;
  auto whole = [&](auto width) {  // fixed-size copies: inline moves
    constexpr int64_t w = decltype(width)::value;
    for (; j + w <= nc; j += w, dst += kc * w)
      for (int64_t k = 0; k < rows; ++k)
        std::memcpy(dst + k * w, src + k * ldb + j, sizeof(float) * w);
  };
  if (nr == 16) whole(std::integral_constant<int64_t, 16>());
  if (nr == 32) whole(std::integral_constant<int64_t, 32>());
  for (; j < nc; j += nr, dst += kc * nr) {
    const int64_t cols = std::min<int64_t>(nr, nc - j);
    for (int64_t k = 0; k < rows; ++k) {
      float* d = dst + k * nr;
      int64_t c = 0;
      for (; c < cols; ++c) d[c] = src[k * ldb + j + c];
      for (; c < nr; ++c) d[c] = 0.f;
    }
  }
}

// Packs sliver jr of transposed B: columns [j, j+cols) of op(B) are rows of B, k
// contiguous; rows [p0, p0+kc) of op(B) go to d, nr floats apart, zero-padded.
void pack_bt_sliver(const float* B, int64_t ldb, int64_t p0, int64_t kc, int64_t j,
                    int64_t cols, int nr, float* d) {
  int64_t c = 0;
#if defined(__SSE2__)
  // 4 x 4 blocks (columns c..c+3, k..k+3) turned with SSE shuffles instead of one
  // strided store per float (the A·Bᵀ of a Dense input gradient: 16% faster).
  for (; c + 4 <= cols; c += 4) {
    const float* s0 = B + (j + c) * ldb + p0;
    const float *s1 = s0 + ldb, *s2 = s1 + ldb, *s3 = s2 + ldb;
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
      __m128 r0 = _mm_loadu_ps(s0 + k), r1 = _mm_loadu_ps(s1 + k);
      __m128 r2 = _mm_loadu_ps(s2 + k), r3 = _mm_loadu_ps(s3 + k);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      _mm_storeu_ps(d + k * nr + c, r0);
      _mm_storeu_ps(d + (k + 1) * nr + c, r1);
      _mm_storeu_ps(d + (k + 2) * nr + c, r2);
      _mm_storeu_ps(d + (k + 3) * nr + c, r3);
    }
    for (; k < kc; ++k) {
      float* dk = d + k * nr + c;
      dk[0] = s0[k];
      dk[1] = s1[k];
      dk[2] = s2[k];
      dk[3] = s3[k];
    }
  }
#endif
  for (; c < cols; ++c) {
    const float* src = B + (j + c) * ldb + p0;
    for (int64_t k = 0; k < kc; ++k) d[k * nr + c] = src[k];
  }
  for (c = cols; c < nr; ++c)
    for (int64_t k = 0; k < kc; ++k) d[k * nr + c] = 0.f;
}

// dst (cols x rows, rows apart) = the transpose of src (rows x cols, ld apart).
void transpose_into(const float* src, int64_t ld, int64_t rows, int64_t cols, float* dst) {
  int64_t j = 0;
#if defined(__SSE2__)
  for (; j + 4 <= cols; j += 4) {  // 4 x 4 blocks turned in registers
    int64_t k = 0;
    for (; k + 4 <= rows; k += 4) {
      const float* s = src + k * ld + j;
      __m128 r0 = _mm_loadu_ps(s), r1 = _mm_loadu_ps(s + ld);
      __m128 r2 = _mm_loadu_ps(s + 2 * ld), r3 = _mm_loadu_ps(s + 3 * ld);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      float* d = dst + j * rows + k;
      _mm_storeu_ps(d, r0);
      _mm_storeu_ps(d + rows, r1);
      _mm_storeu_ps(d + 2 * rows, r2);
      _mm_storeu_ps(d + 3 * rows, r3);
    }
    for (; k < rows; ++k)
      for (int64_t c = j; c < j + 4; ++c) dst[c * rows + k] = src[k * ld + c];
  }
#endif
  for (; j < cols; ++j)
    for (int64_t k = 0; k < rows; ++k) dst[j * rows + k] = src[k * ld + j];
}

#define EMBER_VECTOR_LOOPS "gemm_epilogue_loops.inc"
#include "ember/vector_variants.inc"

void apply_epilogue(const Epilogue& ep, float* C, int64_t ldc, int64_t i0, int64_t i1,
                    int64_t j0, int64_t j1) {
  EMBER_VECTOR_CALL(apply_epilogue, ep, C, ldc, i0, i1, j0, j1);
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

// EMBER_GEMM_KERNEL: "generic", "avx2" or "avx512" forces that kernel (tests compare
// them); unset or anything else picks the widest the CPU runs.
std::string kernel_from_env() {
  const char* v = std::getenv("EMBER_GEMM_KERNEL");
  return v ? std::string(v) : std::string();
}

// 0, 1, ..., K - 1 (valid until the next call on this thread that needs a longer list).
const int32_t* every_k(int64_t K) {
  static thread_local AlignedBuffer<int32_t> every;
  if (every.size() < K) {
    every.resize(K);
    for (int64_t k = 0; k < K; ++k) every[k] = static_cast<int32_t>(k);
  }
  return every.data();
}

// The k in [k0, k1) that the small-M path visits: every k for several rows of A; for
// one row, only where it is nonzero (after a ReLU, about half of a hidden layer's
// inputs are zero, and each skipped k is a row of B not read). Skipping a term
// alpha * 0 * b changes no sum unless b is infinite or NaN, or the sum is a zero whose
// sign it would flip (the reference BLAS sgemv and sgemm have long skipped zeros the
// same way). NaN in A counts as nonzero. Returns the list (valid until the next call on
// this thread) and its length in nk.
const int32_t* list_k(int64_t M, int64_t k0, int64_t k1, const float* A, int64_t* nk) {
  static thread_local AlignedBuffer<int32_t> listed;
  const int32_t* every = every_k(k1);
  *nk = k1 - k0;
  if (M > 1) return every + k0;
  listed.resize(k1 - k0);
  int32_t* ks = listed.data();
  int64_t n = 0, k = k0;
#if defined(__SSE2__)
  const __m128 zero = _mm_setzero_ps();
  for (; k + 4 <= k1; k += 4) {  // four at a time; a dense run is one store
    const int live = _mm_movemask_ps(_mm_cmpneq_ps(_mm_loadu_ps(A + k), zero));
    if (live == 0xF) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(ks + n),
                       _mm_loadu_si128(reinterpret_cast<const __m128i*>(every + k)));
      n += 4;
    } else if (live) {
      for (int q = 0; q < 4; ++q) {
        ks[n] = static_cast<int32_t>(k + q);
        n += (live >> q) & 1;
      }
    }
  }
#endif
  for (; k < k1; ++k) {
    ks[n] = static_cast<int32_t>(k);
    n += A[k] != 0.f;
  }
  *nk = n;
  return n == k1 - k0 ? every + k0 : ks;
}

// How the small-M path (M <= kSmallM, batch-1 inference) splits C (+)= alpha A B: K
// into `chunks` ranges of kc (fixed by K alone), N into `tiles` of tw columns. Task t
// streams the listed rows of B in chunk t / tiles, tile t % tiles, into that chunk's
// partial product (or into C when there is one chunk); the partials are then added
// in chunk order. Tiles change no sum and chunks do not depend on the thread count,
// so every thread count gives the same bits. Being ranges of K rather than of the
// list, a chunk's inputs are known before the whole input is: a thread that made
// columns [c kc, (c + 1) kc) of one layer can go on to chunk c of the next.
struct SmallPlan {
  int64_t M, N, K, chunks, kc, tiles, tw;
  int threads;
  SmallPlan(int64_t m, int64_t n, int64_t k) : M(m), N(n), K(k) {
    chunks = ceil_div(K, kSmallK);
    kc = ceil_div(K, chunks);
    threads = M * N * K >= (1 << 15) && !t_serial ? get_num_threads() : 1;
    tiles = std::min(ceil_div(N, 8), std::max(ceil_div(N, kSmallTile),
                                              ceil_div(threads, chunks)));
    tw = round_up(ceil_div(N, tiles), 8);
  }
  int64_t tasks() const { return chunks * tiles; }
  // Columns of the partials: chunk c's are at part + c * M * N, N apart.
  int64_t partial_floats() const { return chunks > 1 ? chunks * M * N : 0; }
};

// Task t of the plan. One chunk writes C (accumulating if asked) and applies the
// epilogue to its tile; several write their partials.
void small_task(const GemmKernel& kern, const SmallPlan& p, int64_t t, float alpha,
                const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                int64_t ldc, bool accumulate, const Epilogue* epilogue, float* part) {
  const int64_t ch = t / p.tiles, j0 = (t % p.tiles) * p.tw;
  const int64_t k0 = ch * p.kc, k1 = std::min(p.K, k0 + p.kc);
  if (j0 >= p.N || k0 >= k1) return;
  const int64_t w = std::min(p.tw, p.N - j0);
  int64_t nk = 0;
  const int32_t* ks = list_k(p.M, k0, k1, A, &nk);
  if (p.chunks > 1) {
    kern.small_nn(p.M, w, nk, ks, alpha, A, lda, B + j0, ldb, part + ch * p.M * p.N + j0,
                  p.N, false);
    return;
  }
  kern.small_nn(p.M, w, nk, ks, alpha, A, lda, B + j0, ldb, C + j0, ldc, accumulate);
  if (epilogue) apply_epilogue(*epilogue, C, ldc, 0, p.M, j0, j0 + w);
}

// Columns [j0, j1) of C from the partials of a plan with several chunks:
// ((p0 + p1) + p2) ..., stored (or added to C), then the epilogue; 64 columns at a
// time (one pass over the partials, the sums in registers or L1).
void small_reduce(const SmallPlan& p, const float* part, int64_t j0, int64_t j1, float* C,
                  int64_t ldc, bool accumulate, const Epilogue* epilogue) {
  constexpr int64_t kCols = 64;
  for (int64_t i = 0; i < p.M; ++i) {
    float* c = C + i * ldc;
    for (int64_t jb = j0; jb < j1; jb += kCols) {
      const int64_t w = std::min(kCols, j1 - jb);
      float acc[kCols];
      const float* p0 = part + i * p.N + jb;
      for (int64_t j = 0; j < w; ++j) acc[j] = p0[j];
      for (int64_t ch = 1; ch < p.chunks; ++ch) {
        const float* q = part + (ch * p.M + i) * p.N + jb;
        for (int64_t j = 0; j < w; ++j) acc[j] += q[j];
      }
      if (accumulate)
        for (int64_t j = 0; j < w; ++j) c[jb + j] += acc[j];
      else
        for (int64_t j = 0; j < w; ++j) c[jb + j] = acc[j];
    }
  }
  if (epilogue) apply_epilogue(*epilogue, C, ldc, 0, p.M, j0, j1);
}

// C (+)= alpha A B, then the epilogue, for M <= kSmallM: bound by reading B once.
void small_nn(const GemmKernel& kern, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
              bool accumulate, const Epilogue* epilogue) {
  const SmallPlan p(M, N, K);
  static thread_local FloatBuffer partial;
  partial.resize(p.partial_floats());
  float* part = partial.data();
  for_each_task(p.tasks(), p.threads > 1, [&](int64_t t) {
    small_task(kern, p, t, alpha, A, lda, B, ldb, C, ldc, accumulate, epilogue, part);
  });
  if (p.chunks > 1) small_reduce(p, part, 0, N, C, ldc, accumulate, epilogue);
}

}  // namespace

// Defined where each kernel is compiled; null where the CPU lacks its instructions.
const GemmKernel* gemm_kernel_avx2();
const GemmKernel* gemm_kernel_avx512(const GemmKernel* avx2);

const GemmKernel& gemm_kernel() {
  static const GemmKernel* k = [] {
    const std::string want = kernel_from_env();
    const GemmKernel* avx2 = gemm_kernel_avx2();
    const GemmKernel* avx512 = gemm_kernel_avx512(avx2);
    if (want == "generic") return &gemm_kernel_generic();
    if (want == "avx2" && avx2) return avx2;
    if (avx512 && want != "avx2") return avx512;
    return avx2 ? avx2 : &gemm_kernel_generic();
  }();
  return *k;
}

namespace {

// Where op(A) comes from: an array (transposed or not, scaled by alpha), or lines
// found on demand (implicit im2col, alpha 1) starting at line q0.
struct ASource {
  Trans ta = Trans::N;
  const float* A = nullptr;
  int64_t lda = 0;
  float alpha = 1.f;
  const Lines* lines = nullptr;
  int64_t q0 = 0;
};

// Packs rows [i0, i0+mc) x cols [0, kc) of Lᵀ into slivers of mr rows, where line k
// of L has its segments at ptrs[k * nseg + t] (found for the K block being packed).
void pack_a_lines(const Lines& L, const float* const* ptrs, int64_t i0, int64_t mc,
                  int64_t kc, int mr, float* dst) {
  const int64_t nseg = L.nseg, len = L.seglen;
  if (mr == 6 && len % 6 == 0 && i0 % 6 == 0) {
    // Every full sliver lies in one segment: line by line, each segment's run is read
    // once, front to back, and dealt out 6 floats to a sliver (sliver by sliver, each
    // line's cache lines would be fetched again for every sliver).
    const int64_t full = mc / 6 * 6, t0 = i0 / len, off0 = i0 % len;
    for (int64_t k = 0; k < kc; ++k) {
      const float* const* p = ptrs + k * nseg;
      float* d = dst + k * 6;
      int64_t t = t0, off = off0;
      for (int64_t s = 0; s < full; s += 6, d += kc * 6) {
        std::memcpy(d, p[t] + off, sizeof(float) * 6);
        if ((off += 6) == len) off = 0, ++t;
      }
    }
    if (full == mc) return;
    dst += full * kc;
    i0 += full;
    mc -= full;
  }
  for (int64_t s = 0; s < mc; s += mr) {
    const int rows = static_cast<int>(std::min<int64_t>(mr, mc - s));
    float* d = dst + s * kc;
    const int64_t first = i0 + s, last = first + rows - 1;
    if (first / len == last / len) {  // the sliver lies in one segment: copies of rows
      const int64_t t = first / len, off = first % len;
      if (rows == 6 && mr == 6)
        for (int64_t k = 0; k < kc; ++k)
          std::memcpy(d + k * 6, ptrs[k * nseg + t] + off, sizeof(float) * 6);
      else
        for (int64_t k = 0; k < kc; ++k) {
          const float* src = ptrs[k * nseg + t] + off;
          for (int r = 0; r < rows; ++r) d[k * mr + r] = src[r];
        }
    } else {
      for (int r = 0; r < rows; ++r) {
        const int64_t t = (first + r) / len, off = (first + r) % len;
        for (int64_t k = 0; k < kc; ++k) d[k * mr + r] = ptrs[k * nseg + t][off];
      }
    }
    for (int r = rows; r < mr; ++r)
      for (int64_t k = 0; k < kc; ++k) d[k * mr + r] = 0.f;
  }
}

// Per-thread room for a block of found lines: their segment pointers and the
// segments built in scratch.
struct LineBuffers {
  AlignedBuffer<const float*> ptrs;
  FloatBuffer scratch;
  const float** find(const Lines& L, int64_t q0, int64_t count) {
    ptrs.resize(count * L.nseg);
    scratch.resize(count * L.length());
    L.find(L.ctx, q0, count, ptrs.data(), scratch.data());
    return ptrs.data();
  }
};

// The last m rows of a block against slivers [0, slivers) of a K block of packed B
// (kc x nr each), N columns from the first: kern.edge, out of the task loop's way.
__attribute__((noinline)) void run_edge(const GemmKernel& kern, int64_t kc, const float* A,
                                        int64_t a_row, int64_t a_k, const float* bp,
                                        int64_t slivers, int64_t n, float* C, int64_t ldc,
                                        int64_t m, bool accumulate, const float* bias,
                                        bool relu) {
  const int last = static_cast<int>(std::min<int64_t>(kern.nr, n - (slivers - 1) * kern.nr));
  kern.edge(kc, A, a_row, a_k, bp, kc * kern.nr, slivers, last, C, ldc, static_cast<int>(m),
            accumulate, bias, relu);
}

// One product, C = alpha op(A) op(B) + beta C then the epilogue, and the paths that
// compute it (gemm_impl picks one; each is defined below). beta is 0 or 1 by then:
// gemm_impl scales C first otherwise.
struct Product {
  ASource a;
  Trans tb;
  int64_t M, N, K;
  const float* B;
  int64_t ldb;
  float beta;
  float* C;
  int64_t ldc;
  const Epilogue* epilogue;

  void small_m(const GemmKernel& kern) const;
  void split_k() const;
  void narrow(const GemmKernel& kern, bool narrow_tn, int threads) const;
  void short_k(const GemmKernel& kern, int threads) const;
  // after: the scale, shift and relu to apply to each task's block once it is done.
  void blocked(const GemmKernel& kern, int threads, const Epilogue* after) const;
};

void gemm_impl(const ASource& a, Trans tb, int64_t M, int64_t N, int64_t K, const float* B,
               int64_t ldb, float beta, float* C, int64_t ldc, const Epilogue* epilogue);

// A few rows of A, both operands untransposed (batch-1 inference, a recurrent step
// at batch 1): rows of B streamed once, no packing (kern.small_nn through small_nn).
// (It lists k as 32-bit indices: K <= INT32_MAX.)
void Product::small_m(const GemmKernel& kern) const {
  const float* A = a.A;
  int64_t lda = a.lda;
  if (a.lines) {  // a few implicit rows: form them (M x K floats), then as dense
    static thread_local LineBuffers found;
    static thread_local FloatBuffer rows;
    const Lines& L = *a.lines;
    const float** p = found.find(L, a.q0, M);
    rows.resize(M * K);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t t = 0; t < L.nseg; ++t)
        std::memcpy(rows.data() + i * K + t * L.seglen, p[i * L.nseg + t],
                    sizeof(float) * L.seglen);
    A = rows.data();
    lda = K;
  }
  small_nn(kern, M, N, K, a.alpha, A, lda, B, ldb, C, ldc, beta != 0.f, epilogue);
}

// A small C over a long K (the weight gradient of a first conv layer is 27 x 32
// summed over 57,600 rows; an LSTM's input kernel 128 x 512 over batch x steps rows):
// splitting M and N would leave threads idle, or have every thread read one packed
// panel of B too tall for any cache, so split K into fixed chunks, one thread's each,
// and add their partial products in chunk order. The chunking depends on K alone:
// still the same sum for any thread count.
// (Implicit rows of A are not split along K: a chunk would cut their segments.)
void Product::split_k() const {
  // Equal chunks (a short last one would idle a thread), at most kSplitK long, as many
  // as a multiple of kSplitKRound so that 2 or 4 threads get the same number (13 for 2
  // threads would leave one idle for the last).
  const int64_t most = std::max(kSplitKRound, kSplitKPartialFloats / (M * N) / kSplitKRound *
                                                  kSplitKRound);
  const int64_t chunks = std::min(most, round_up(ceil_div(K, kSplitK), kSplitKRound));
  const int64_t klen = ceil_div(K, chunks);
  static thread_local FloatBuffer partial;
  partial.resize(chunks * M * N);
  float* part = partial.data();
#pragma omp parallel for schedule(static)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    // (The last chunks may be empty: their partial products are zeros.)
    const int64_t k0 = std::min(K, ch * klen), kc = std::min(klen, K - k0);
    ASource sub = a;
    if (a.lines)
      sub.q0 += k0;
    else
      sub.A += a.ta == Trans::N ? k0 : k0 * a.lda;
    const float* b = tb == Trans::N ? B + k0 * ldb : B + k0;
    // Nested inside this region, the product runs on the calling thread alone.
    gemm_impl(sub, tb, M, N, kc, b, ldb, 0.f, part + ch * M * N, N, nullptr);
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < M; ++i) {
    // Chunk by chunk into the first chunk's row (whole rows: the loops vectorize).
    float* __restrict acc = part + i * N;
    for (int64_t ch = 1; ch < chunks; ++ch) {
      const float* __restrict p = part + (ch * M + i) * N;
      for (int64_t j = 0; j < N; ++j) acc[j] += p[j];
    }
    float* row = C + i * ldc;
    if (beta == 0.f)  // beta is 0 or 1 here
      std::memcpy(row, acc, sizeof(float) * N);
    else
      for (int64_t j = 0; j < N; ++j) row[j] += acc[j];
  }
  if (epilogue) apply_epilogue(*epilogue, C, ldc, 0, M, 0, N);
}

// A narrow C (an output layer): its own kernels, blocks of rows split over the
// threads; each element is one thread's sum, so the bits do not depend on the count.
// Aᵀ·B (the weight gradient): no packing, A's rows give i in vectors. A·B or A·Bᵀ
// (the forward): dot products along k, A's rows in place, B's columns as rows
// (transposed once when B is not already). narrow_tn: the Aᵀ·B form.
void Product::narrow(const GemmKernel& kern, bool narrow_tn, int threads) const {
  const float* bt = B;
  int64_t ldbt = ldb;
  if (!narrow_tn && tb == Trans::N) {
    static thread_local FloatBuffer b_rows;
    b_rows.resize(N * K);
    transpose_into(B, ldb, K, N, b_rows.data());
    bt = b_rows.data();
    ldbt = K;
  }
  const float* bias = epilogue ? epilogue->bias : nullptr;
  const bool relu = epilogue && epilogue->relu;
  const int64_t blocks = ceil_div(M, kNarrowRows);
  auto block = [&](int64_t ib) {
    const int64_t i0 = ib * kNarrowRows, rows = std::min(kNarrowRows, M - i0);
    if (narrow_tn)
      kern.narrow_tn(rows, N, K, a.alpha, a.A + i0, a.lda, B, ldb, C + i0 * ldc, ldc,
                     beta != 0.f, bias, relu);
    else
      kern.narrow_nn(rows, N, K, a.alpha, a.A + i0 * a.lda, a.lda, bt, ldbt, C + i0 * ldc,
                     ldc, beta != 0.f, bias, relu);
  };
  for_each_task(blocks, threads > 1 && blocks > 1 && M * N * K >= kNarrowSplitMacs, block);
}

// A short K (the input gradient of a small output layer, 128 x 256 x 10 or 128 x 64
// x 4): a 16-wide tile would spend longer storing C than computing it. Rows of B
// (transposed once when B is) stream into groups of four rows of C, as batch-1
// inference does, each 4 x 16 block of C in registers for the whole K: no packing,
// every lane used. Groups are split over the threads; each element is one thread's
// sum over k in order.
void Product::short_k(const GemmKernel& kern, int threads) const {
  const float* bk = B;
  int64_t ldbk = ldb;
  if (tb == Trans::T) {
    static thread_local FloatBuffer b_rows;
    b_rows.resize(K * N);
    transpose_into(B, ldb, N, K, b_rows.data());
    bk = b_rows.data();
    ldbk = N;
  }
  const int32_t* ks = every_k(K);
  const int64_t groups = ceil_div(M, kSmallM);
  auto group = [&](int64_t g) {
    const int64_t i0 = g * kSmallM, rows = std::min(kSmallM, M - i0);
    kern.small_nn(rows, N, K, ks, a.alpha, a.A + i0 * a.lda, a.lda, bk, ldbk, C + i0 * ldc,
                  ldc, beta != 0.f);
    if (epilogue) apply_epilogue(*epilogue, C + i0 * ldc, ldc, 0, rows, 0, N);
  };
  for_each_task(groups, threads > 1 && groups > 1 && M * N * K >= kNarrowSplitMacs, group);
}

// Everything else: packed panels of B, blocks of rows of A (packed, or read in place),
// the register micro-kernel over K blocks, tasks over the threads.
void Product::blocked(const GemmKernel& kern, int threads, const Epilogue* after) const {
  const int mr = kern.mr, nr = kern.nr;
  // Untransposed A with alpha 1 can be read in place: its rows already are what a
  // packed sliver would hold, k contiguous. So are implicit rows, segment by segment.
  // It is, except when the rows' stride is a multiple of 2 KB: then six rows fall into
  // the same few L1 sets and evict the sliver of B (1024 x 1024: 5% slower than packing).
  const bool in_place_a = a.ta == Trans::N && a.alpha == 1.f;
  bool direct_a = in_place_a && (a.lines || a.lda % kAliasFloats != 0);
  const bool implicit_rows = in_place_a && a.lines;
  // Aᵀ given as lines (a convolution's weight gradient, the patch matrix transposed): for
  // a tile whose rows lie in one segment, the kernel reads each k's mr values where the
  // line has them. Packing would copy every value of A to use it once per sliver of B,
  // and these products have one or two slivers (32 to 64 filters). A tile whose rows
  // run on into the next segment (segments of 9 floats: a 3-channel stem) is packed.
  const bool cols_a = a.lines && a.ta == Trans::T && a.alpha == 1.f && kern.run_cols;
  const int64_t seglen = a.lines ? a.lines->seglen : 1;
  auto in_one_segment = [&](int64_t i, int64_t m) { return i % seglen + m <= seglen; };

  // Panels of B: all of K, at most kPanelFloats, at least one sliver wide.
  const int64_t nc_max = std::min(round_up(N, nr),
                                  std::max<int64_t>(nr, kPanelFloats / K / nr * nr));
  // Task grid: M blocks of at most kMC rows, sized so every thread gets the same
  // number of equal blocks; N chunks as well when M alone cannot feed every thread.
  const int64_t rows_per_thread = ceil_div(M, threads);
  const int64_t blocks_per_thread = ceil_div(rows_per_thread, kMC);
  int64_t mc = round_up(ceil_div(rows_per_thread, blocks_per_thread), mr);
  int64_t mblocks = ceil_div(M, mc);
  // Blocks of rows serve A's packing; read in place, one thread takes all its rows in
  // one block, so each K block's lines are found once.
  if (cols_a && threads == 1) mblocks = 1;
  // The blocks share the micro-tiles of rows evenly, none more than one tile longer than
  // another (512 rows in 4 blocks: 132, 126, 132, 122, not 132, 132, 132, 116: the two
  // threads' shares then differ by 1.5% instead of 6%); mc is the longest.
  const int64_t mtiles = ceil_div(M, mr);
  mc = mr * ceil_div(mtiles, mblocks);
  // A few rows (batch-1 convolutions: 16 x 64 x 576) split unevenly by M; when
  // splitting N instead gives a thread fewer micro-tiles, keep M whole. On a tie too
  // when A can be read in place: each sliver of B then serves twice the rows (MLP
  // forward 128 x 512 x 784: 6% faster), and A is read in place whatever its stride,
  // as every thread would pack all of it (128 x 256 x 512: 19% faster).
  if (M <= kMC && threads > 1) {
    const int64_t slivers = ceil_div(std::min(N, nc_max), nr);
    const int64_t by_m = ceil_div(mblocks, threads) * ceil_div(mc, mr) *
                         ceil_div(slivers, std::max<int64_t>(1, ceil_div(threads, mblocks)));
    const int64_t by_n = ceil_div(M, mr) * ceil_div(slivers, threads);
    if (by_n < by_m || (by_n == by_m && in_place_a)) {
      mc = round_up(M, mr);
      mblocks = 1;
      direct_a = in_place_a;
    }
  }

  // K in equal blocks of at most kKC (784 = 2 x 392, not 400 + 384): a short
  // last block would cost a full pass over C for little work. Implicit rows are cut
  // between segments only. The split depends on K alone, so the summation order never
  // depends on the thread count.
  int64_t kstep = K <= kKCWhole ? K : ceil_div(K, ceil_div(K, kKC));
  if (implicit_rows) {
    const int64_t len = a.lines->seglen;
    kstep = ceil_div(a.lines->nseg, ceil_div(K, std::max(kKC, len))) * len;
  }
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
    // One block of rows: each sliver serves one task, which packs it itself, a K block
    // at a time just before using it (in its own caches, no barrier between packing and
    // computing). Several blocks share the slivers, and B just written by the team is
    // best read where it lies: packed first, together, by rows.
    const bool just_written = epilogue && epilogue->b_just_written;
    const bool own_b = mblocks == 1 && !just_written;
    // A panel that fits in L2, shared by several blocks of rows on every thread: each
    // thread packs all of it into a buffer of its own, with no barrier. Packed together,
    // each thread's half was written over lines the other core held, then read from
    // there by the other's kernels (512 x 256 x 128 Aᵀ·B at 2 threads: the packing took
    // 15% of the time, against 1% on one thread).
    const bool private_b = !own_b && !just_written && threads > 1 && nchunks == 1 &&
                           K * ncr <= kPrivateBFloats;
#pragma omp parallel
    {
      // Part idx of the whole panel's packing into dst. Untransposed B in groups of
      // kPackRows rows: the group's rows stay in L1 while each sliver receives one
      // contiguous run of them (a sliver at a time down all of K would read B a line per
      // row; a row at a time would write to every sliver). Transposed B a sliver at a time.
      const int64_t groups = ceil_div(kstep, kPackRows);
      const int64_t parts = kblocks * (tb == Trans::N ? groups : slivers);
      auto pack_part = [&](int64_t idx, float* dst) {
        if (tb == Trans::N) {
          const int64_t pc = idx / groups * kstep, k0 = pc + idx % groups * kPackRows;
          const int64_t kc = std::min(kstep, K - pc), k1 = std::min(pc + kc, k0 + kPackRows);
          if (k0 < k1)
            pack_b_rows(B + k0 * ldb + jc, ldb, k1 - k0, nc, nr, kc,
                        dst + pc * ncr + (k0 - pc) * nr);
        } else {
          const int64_t pc = idx / slivers * kstep, s = idx % slivers;
          const int64_t kc = std::min(kstep, K - pc), j = jc + s * nr;
          pack_bt_sliver(B, ldb, pc, kc, j, std::min<int64_t>(nr, N - j), nr,
                         dst + pc * ncr + s * kc * nr);
        }
      };
      static thread_local FloatBuffer b_private;
      float* bpt = bp;
      if (own_b) {
        // (each task packs its slivers below)
      } else if (private_b) {
        b_private.resize(K * ncr);
        bpt = b_private.data();
        for (int64_t idx = 0; idx < parts; ++idx) pack_part(idx, bpt);
      } else {
#pragma omp for schedule(static)
        for (int64_t idx = 0; idx < parts; ++idx) pack_part(idx, bp);
      }
      static thread_local FloatBuffer a_pack;
      static thread_local LineBuffers found;
      if (!direct_a && (!cols_a || seglen % mr != 0)) a_pack.resize(round_up(mc, mr) * kstep);
      float* ap = a_pack.data();
      auto task = [&](int64_t t) {
        const int64_t ib = t / nchunks, ch = t % nchunks;
        const int64_t i0 = mr * (ib * mtiles / mblocks);
        const int64_t mrows = std::min(M, mr * ((ib + 1) * mtiles / mblocks)) - i0;
        const int64_t s0 = ch * per_chunk, s1 = std::min(slivers, s0 + per_chunk);
        if (s0 >= s1) return;
        // Implicit rows: every segment of this block's rows, found once.
        const float** seg = implicit_rows ? found.find(*a.lines, a.q0 + i0, mrows) : nullptr;
        const int64_t nseg = a.lines ? a.lines->nseg : 1;
        for (int64_t pc = 0; pc < K; pc += kstep) {
          const int64_t kc = std::min(kstep, K - pc);
          const bool accumulate = pc > 0 || beta != 0.f;
          // The epilogue is applied by the kernel as it stores the last K block.
          const bool last = pc + kc == K;
          const float* bias = last && epilogue ? epilogue->bias : nullptr;
          const bool relu = last && epilogue && epilogue->relu;
          if (own_b) {
            if (tb == Trans::N) {
              const int64_t j0 = s0 * nr, w = std::min(nc, s1 * nr) - j0;
              for (int64_t k0 = pc; k0 < pc + kc; k0 += kPackRows)
                pack_b_rows(B + k0 * ldb + jc + j0, ldb, std::min(kPackRows, pc + kc - k0), w,
                            nr, kc, bp + pc * ncr + s0 * kc * nr + (k0 - pc) * nr);
            } else {
              for (int64_t s = s0; s < s1; ++s) {
                const int64_t j = jc + s * nr;
                pack_bt_sliver(B, ldb, pc, kc, j, std::min<int64_t>(nr, N - j), nr,
                               bp + pc * ncr + s * kc * nr);
              }
            }
          }
          // Aᵀ as lines: this K block's, read in place or packed.
          const float* const* cols =
              a.lines && a.ta == Trans::T ? found.find(*a.lines, a.q0 + pc, kc) : nullptr;
          if (cols_a) {
            if (seglen % mr != 0)  // the tiles that cross a segment's end
              for (int64_t ir = 0; ir < mrows; ir += mr) {
                const int64_t m = std::min<int64_t>(mr, mrows - ir);
                if (!in_one_segment(i0 + ir, m))
                  pack_a_lines(*a.lines, cols, i0 + ir, m, kc, mr, ap + ir * kc);
              }
          } else if (!direct_a) {
            if (a.lines)
              pack_a_lines(*a.lines, cols, i0, mrows, kc, mr, ap);
            else
              pack_a(a.ta, a.A, a.lda, i0, mrows, pc, kc, mr, a.alpha, ap);
          }
          // The last few rows of the block (fewer than half a tile) take the kernel's
          // edge path, all this task's slivers at once.
          const int64_t edge =
              implicit_rows || cols_a || !kern.edge || mrows % mr > mr / 2 ? 0 : mrows % mr;
          const int64_t tiled = mrows - edge;
          if (edge)
            run_edge(kern, kc, direct_a ? a.A + (i0 + tiled) * a.lda + pc : ap + tiled * kc,
                      direct_a ? a.lda : 1, direct_a ? 1 : mr, bpt + pc * ncr + s0 * kc * nr,
                      s1 - s0, N - jc - s0 * nr, C + (i0 + tiled) * ldc + jc + s0 * nr, ldc,
                      edge, accumulate, bias ? bias + jc + s0 * nr : nullptr, relu);
          for (int64_t s = s0; s < s1; ++s) {
            const int64_t j = jc + s * nr;
            const int n = static_cast<int>(std::min<int64_t>(nr, N - j));
            const float* b = bpt + pc * ncr + s * kc * nr;
            for (int64_t ir = 0; ir < tiled; ir += mr) {
              const int m = static_cast<int>(std::min<int64_t>(mr, mrows - ir));
              float* c = C + (i0 + ir) * ldc + j;
              const float* bj = bias ? bias + j : nullptr;
              if (implicit_rows) {
                const int64_t len = a.lines->seglen;
                kern.run_segs(kc / len, len, seg + ir * nseg + pc / len, nseg, b, c, ldc, m, n,
                              accumulate, bj, relu);
              } else if (cols_a && in_one_segment(i0 + ir, m)) {
                const int64_t i = i0 + ir;
                kern.run_cols(kc, cols + i / seglen, nseg, i % seglen, b, c, ldc, m, n,
                              accumulate, bj, relu);
              } else if (direct_a) {
                const float* rows[8];  // mr <= 8: both kernels have mr <= 6
                for (int r = 0; r < m; ++r) rows[r] = a.A + (i0 + ir + r) * a.lda + pc;
                kern.run_segs(1, kc, rows, 1, b, c, ldc, m, n, accumulate, bj, relu);
              } else {
                kern.run(kc, ap + ir * kc, b, c, ldc, m, n, accumulate, bj, relu);
              }
            }
          }
        }
        if (after)
          apply_epilogue(*after, C, ldc, i0, i0 + mrows, jc + s0 * nr,
                         std::min(N, jc + s1 * nr));
      };
      // Many tasks are handed out in shrinking runs to whichever thread is free (on a
      // shared machine one core can be slower for minutes: with a busy process on one
      // core, 1024 x 1024 x 1024 takes 15% less time, conv2's 10816 x 64 x 288 18%
      // less; the same speed otherwise); a few keep their thread from call to call,
      // with its rows of A and C in its caches. A task's output never depends on the
      // thread that runs it.
#ifdef EMBER_OPENMP
      const int team = omp_get_num_threads();
#else
      const int team = 1;
#endif
      if (tasks >= 4 * team) {
#pragma omp for schedule(guided)
        for (int64_t t = 0; t < tasks; ++t) task(t);
      } else {
#pragma omp for schedule(static)
        for (int64_t t = 0; t < tasks; ++t) task(t);
      }
    }
  }
}

// Threads for one product: nested in a parallel region (a split-K chunk) or under
// SerialGemm, it has one.
int product_threads() {
#ifdef EMBER_OPENMP
  return omp_in_parallel() || t_serial ? 1 : get_num_threads();
#else
  return 1;
#endif
}

// C = alpha op(A) op(B) + beta C, then the epilogue: C scaled first where beta is
// neither 0 nor 1, nothing multiplied where K or alpha is 0, else one of the paths.
void gemm_impl(const ASource& a, Trans tb, int64_t M, int64_t N, int64_t K, const float* B,
               int64_t ldb, float beta, float* C, int64_t ldc, const Epilogue* epilogue) {
  if (M == 0 || N == 0) return;

  // C = beta * C first when beta is neither 0 nor 1, so the kernel only ever
  // overwrites (first K block, beta 0) or accumulates.
  const bool scale_c = beta != 0.f && beta != 1.f;
  if (scale_c || K == 0 || a.alpha == 0.f) {
    for (int64_t i = 0; i < M; ++i) {
      float* row = C + i * ldc;
      if (beta == 0.f)
        std::memset(row, 0, sizeof(float) * N);
      else if (beta != 1.f)
        for (int64_t j = 0; j < N; ++j) row[j] *= beta;
    }
    if (K == 0 || a.alpha == 0.f) {
      if (epilogue) apply_epilogue(*epilogue, C, ldc, 0, M, 0, N);
      return;
    }
  }

  // A folded scale and shift: the blocked path applies it block by block, while each
  // block of C is still in cache; the other paths add the bias alone, then it follows
  // over C.
  const bool scaled = epilogue && epilogue->scale;
  Epilogue bias_only, after;
  if (scaled) {
    bias_only.bias = epilogue->bias;
    bias_only.b_just_written = epilogue->b_just_written;
    after = *epilogue;
    after.bias = nullptr;
  }
  const GemmKernel& kern = gemm_kernel();
  const Product p{a, tb, M, N, K, B, ldb, beta, C, ldc, scaled ? &bias_only : epilogue};
  if (M <= kSmallM && a.ta == Trans::N && tb == Trans::N && K <= INT32_MAX) {
    p.small_m(kern);
  } else if (M * N <= kSplitKMaxC && K >= 2 * kSplitK && !(a.lines && a.ta == Trans::N)) {
    p.split_k();
  } else {
    const int threads = product_threads();
    const bool narrow_tn = a.ta == Trans::T && tb == Trans::N && N <= kNarrowN && !a.lines;
    const bool narrow_nn = a.ta == Trans::N && N <= kNarrowN && K >= kNarrowMinK && !a.lines;
    if (narrow_tn || narrow_nn)
      p.narrow(kern, narrow_tn, threads);
    else if (a.ta == Trans::N && K <= kShortK && N >= 16 && !a.lines)
      p.short_k(kern, threads);
    else
      return p.blocked(kern, threads, scaled ? &after : nullptr);
  }
  if (scaled) apply_epilogue(after, C, ldc, 0, M, 0, N);
}

}  // namespace

void sgemm(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
           float* C, int64_t ldc, const Epilogue* epilogue) {
  check_args("sgemm", M, N, K, lda, ldb, ldc, ta, tb);
  ASource a;
  a.ta = ta;
  a.A = A;
  a.lda = lda;
  a.alpha = alpha;
  gemm_impl(a, tb, M, N, K, B, ldb, beta, C, ldc, epilogue);
}

void sgemm_lines(Trans ta, const Lines& L, int64_t M, int64_t N, int64_t K, const float* B,
                 int64_t ldb, float beta, float* C, int64_t ldc, const Epilogue* epilogue) {
  check_args("sgemm_lines", M, N, K, ta == Trans::N ? K : M, ldb, ldc, ta, Trans::N);
  if (!L.find || L.nseg < 1 || L.seglen < 1 || L.length() != (ta == Trans::N ? K : M))
    throw std::invalid_argument("sgemm_lines: lines of " + std::to_string(L.length()) +
                                " floats do not match the product's sizes");
  ASource a;
  a.ta = ta;
  a.lines = &L;
  gemm_impl(a, Trans::N, M, N, K, B, ldb, beta, C, ldc, epilogue);
}

void sgemm_small_columns(int64_t M, int64_t K, const float* A, int64_t lda, const float* B,
                         int64_t ldb, float* C, int64_t ldc, const float* bias,
                         const int64_t* j0, int64_t blocks, int64_t w) {
  check_args("sgemm_small_columns", M, w, K, lda, ldb, ldc, Trans::N, Trans::N);
  Epilogue ep;
  ep.bias = bias;
  if (M > kSmallM || K > kSmallK) {  // sgemm's own split: one product per block
    SerialGemm serial;
    for (int64_t b = 0; b < blocks; ++b) {
      ep.bias = bias ? bias + j0[b] : nullptr;
      sgemm(Trans::N, Trans::N, M, w, K, 1.f, A, lda, B + j0[b], ldb, 0.f, C + j0[b], ldc,
            &ep);
    }
    return;
  }
  // One chunk of K, as SmallPlan makes it for these sizes; tiles change no sum.
  const GemmKernel& kern = gemm_kernel();
  int64_t nk = 0;
  const int32_t* ks = list_k(M, 0, K, A, &nk);
  for (int64_t b = 0; b < blocks; ++b) {
    kern.small_nn(M, w, nk, ks, 1.f, A, lda, B + j0[b], ldb, C + j0[b], ldc, false);
    if (bias) apply_epilogue(ep, C, ldc, 0, M, j0[b], j0[b] + w);
  }
}

void sgemm_small_chain(int64_t M, const float* x, const ChainLayer* layers, int64_t count,
                       bool helpers) {
  if (M < 1 || M > kSmallM || count < 1)
    throw std::invalid_argument("sgemm_small_chain: expected 1 to " + std::to_string(kSmallM) +
                                " rows and at least one layer. Received: M=" +
                                std::to_string(M) + ", count=" + std::to_string(count));
  for (int64_t l = 0; l < count; ++l)
    if (layers[l].k < 1 || layers[l].n < 1 || layers[l].k > INT32_MAX ||
        (l > 0 && layers[l].k != layers[l - 1].n))
      throw std::invalid_argument("sgemm_small_chain: layer " + std::to_string(l) + " is " +
                                  std::to_string(layers[l].k) + " x " +
                                  std::to_string(layers[l].n) + ", which does not follow");
  const GemmKernel& kern = gemm_kernel();
  static thread_local std::vector<SmallPlan> plan_buf;
  static thread_local std::vector<int64_t> offset_buf;
  static thread_local FloatBuffer partial;
  plan_buf.clear();
  offset_buf.clear();
  int64_t floats = 0;
  for (int64_t l = 0; l < count; ++l) {
    plan_buf.emplace_back(M, layers[l].n, layers[l].k);
    offset_buf.push_back(floats);
    floats += plan_buf.back().partial_floats();
  }
  partial.resize(floats);
  // (Thread-local: the region's threads take these through plain pointers.)
  const SmallPlan* plans = plan_buf.data();
  const int64_t* offsets = offset_buf.data();
  float* parts = partial.data();
  auto input = [&](int64_t l) { return l == 0 ? x : layers[l - 1].y; };

  for (int64_t i = 0, e = 0; i < count; i = e) {
    e = i + 1;
    if (plans[i].threads <= 1) {  // too small to split: this thread alone
      const ChainLayer& L = layers[i];
      small_nn(kern, M, L.n, L.k, 1.f, input(i), L.k, L.w, L.n, L.y, L.n, false, &L.ep);
      continue;
    }
    while (e < count && plans[e].threads > 1) ++e;
    // Every other call, each thread takes its tasks in reverse order. Its share of the
    // weights (about 900 KB of the MLP's) nearly fills its 1 MB L2, and a cache that
    // evicts the least recently used keeps almost none of a working set swept again
    // in the same order; swept the other way, it starts with what the last call left.
    // Each task still writes its own partial and they are added in chunk order: the
    // same bits. (MLP at batch 1: 3-6% faster.)
    static thread_local unsigned calls = 0;
    const bool flip = ++calls & 1;
    SpinBarrier barrier;
    auto body = [&](int t, int T) {
      for (int64_t l = i; l < e; ++l) {
        const SmallPlan& p = plans[l];
        const ChainLayer& L = layers[l];
        float* part = parts + offsets[l];
        const int64_t q0 = p.tasks() * t / T, q1 = p.tasks() * (t + 1) / T;
        for (int64_t q = q0; q < q1; ++q)
          small_task(kern, p, flip ? q1 - 1 - (q - q0) : q, 1.f, input(l), L.k, L.w, L.n, L.y,
                     L.n, false, &L.ep, part);
        if (l + 1 == e) break;  // the last layer's partials are summed after the join
        barrier.wait(T);
        if (p.chunks == 1) continue;  // y is complete
        // Sum the partials into y. When the next layer's tasks are whole chunks, this
        // thread takes the columns its own tasks there read; otherwise an even share,
        // and a barrier before y is read.
        const SmallPlan& next = plans[l + 1];
        const bool own = next.tiles == 1;
        const int64_t j0 = own ? std::min(p.N, next.tasks() * t / T * next.kc) : p.N * t / T;
        const int64_t j1 =
            own ? std::min(p.N, next.tasks() * (t + 1) / T * next.kc) : p.N * (t + 1) / T;
        if (j0 < j1) small_reduce(p, part, j0, j1, L.y, L.n, false, &L.ep);
        if (!own) barrier.wait(T);
      }
    };
    auto run = [](void* ctx, int t, int T) { (*static_cast<decltype(body)*>(ctx))(t, T); };
    if (!helpers || !run_on_helpers(plans[i].threads, run, &body)) {
#ifdef EMBER_OPENMP
#pragma omp parallel num_threads(plans[i].threads)
      body(omp_get_thread_num(), omp_get_num_threads());
#else
      body(0, 1);
#endif
    }
    const SmallPlan& p = plans[e - 1];
    const ChainLayer& L = layers[e - 1];
    if (p.chunks > 1) small_reduce(p, parts + offsets[e - 1], 0, L.n, L.y, L.n, false, &L.ep);
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
