// gemm_kernel_avx2.cpp: the 6 x 16 AVX2+FMA micro-kernel. This file alone is
// compiled with -mavx2 -mfma; sgemm reaches it through gemm_kernel_avx2(), which
// returns it only when the CPU reports both features. It includes no templates
// from the standard library, so no AVX2 instantiation can leak into other files.
#include "ember/gemm.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

namespace ember {
namespace {

constexpr int kMR = 6;
constexpr int kNR = 16;

// 12 ymm accumulators hold the 6 x 16 tile; per k step two loads of B, six
// broadcasts of A and twelve FMAs. k runs ascending, as in the generic kernel.
//
// Where the tile's A comes from. kPacked: an MR-row sliver, a[k * MR + r], kc = seglen
// (nseg is 1). kRows: A read in place, row r of the tile as nseg segments of seglen
// contiguous floats, segment t at rows[r * stride + t] (a dense row is one segment; an
// implicit im2col row is one per kernel row), so no packing copy is needed. kCols: Aᵀ
// read in place (nseg is 1): element (r, k) at rows[k * stride][off + r]. Rows past m
// repeat the last valid row (computed, never stored) so nothing outside A is read.
enum class ASrc { kPacked, kRows, kCols };

template <ASrc kSrc>
void kernel_avx2(int64_t nseg, int64_t seglen, const float* Ap, const float* const* rows,
                 int64_t stride, int64_t off, const float* Bp, float* C, int64_t ldc, int m,
                 int n, bool accumulate, const float* bias, bool relu) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int i = 0; i < m; ++i) _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc), _MM_HINT_T0);
  // Row r of the tile reads row i[r] of A.
  const int i1 = m > 1 ? 1 : 0, i2 = m > 2 ? 2 : m - 1, i3 = m > 3 ? 3 : m - 1,
            i4 = m > 4 ? 4 : m - 1, i5 = m > 5 ? 5 : m - 1;
  const float* a = Ap;
  const float* b = Bp;
  for (int64_t t = 0; t < nseg; ++t) {
    const float *r0 = nullptr, *r1 = nullptr, *r2 = nullptr, *r3 = nullptr, *r4 = nullptr,
                *r5 = nullptr;
    if (kSrc == ASrc::kRows) {
      r0 = rows[t];
      r1 = rows[i1 * stride + t];
      r2 = rows[i2 * stride + t];
      r3 = rows[i3 * stride + t];
      r4 = rows[i4 * stride + t];
      r5 = rows[i5 * stride + t];
    }
    for (int64_t k = 0; k < seglen; ++k, a += kMR, b += kNR) {
      const __m256 b0 = _mm256_load_ps(b);
      const __m256 b1 = _mm256_load_ps(b + 8);
      // Where the six values of A at this k are.
      const float *p0, *p1, *p2, *p3, *p4, *p5;
      if (kSrc == ASrc::kPacked) {
        _mm_prefetch(reinterpret_cast<const char*>(a + 8 * kMR), _MM_HINT_T0);
        p0 = a; p1 = a + 1; p2 = a + 2; p3 = a + 3; p4 = a + 4; p5 = a + 5;
      } else if (kSrc == ASrc::kRows) {
        p0 = r0 + k; p1 = r1 + k; p2 = r2 + k; p3 = r3 + k; p4 = r4 + k; p5 = r5 + k;
      } else {
        p0 = rows[k * stride] + off;
        p1 = p0 + i1; p2 = p0 + i2; p3 = p0 + i3; p4 = p0 + i4; p5 = p0 + i5;
      }
      __m256 x = _mm256_broadcast_ss(p0);
      c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01);
      x = _mm256_broadcast_ss(p1);
      c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11);
      x = _mm256_broadcast_ss(p2);
      c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21);
      x = _mm256_broadcast_ss(p3);
      c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31);
      x = _mm256_broadcast_ss(p4);
      c40 = _mm256_fmadd_ps(x, b0, c40); c41 = _mm256_fmadd_ps(x, b1, c41);
      x = _mm256_broadcast_ss(p5);
      c50 = _mm256_fmadd_ps(x, b0, c50); c51 = _mm256_fmadd_ps(x, b1, c51);
    }
  }
  if (m == kMR && n == kNR) {
    // Full tile: from registers to C, through the epilogue.
    const bool any = bias || relu;
    const __m256 bias0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
    const __m256 bias1 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
    const __m256 zero = _mm256_setzero_ps();
    float* r = C;
    auto row = [&](__m256 c0, __m256 c1) {
      if (accumulate) {
        c0 = _mm256_add_ps(c0, _mm256_loadu_ps(r));
        c1 = _mm256_add_ps(c1, _mm256_loadu_ps(r + 8));
      }
      if (any) {
        if (bias) {
          c0 = _mm256_add_ps(c0, bias0);
          c1 = _mm256_add_ps(c1, bias1);
        }
        if (relu) {  // max(v, 0) gives 0 for NaN, like v > 0 ? v : 0
          c0 = _mm256_max_ps(c0, zero);
          c1 = _mm256_max_ps(c1, zero);
        }
      }
      _mm256_storeu_ps(r, c0);
      _mm256_storeu_ps(r + 8, c1);
      r += ldc;
    };
    row(c00, c01); row(c10, c11); row(c20, c21);
    row(c30, c31); row(c40, c41); row(c50, c51);
    return;
  }
  // Edge tile: through a buffer, writing only the m x n corner.
  alignas(32) float tile[kMR][kNR];
  _mm256_store_ps(tile[0], c00); _mm256_store_ps(tile[0] + 8, c01);
  _mm256_store_ps(tile[1], c10); _mm256_store_ps(tile[1] + 8, c11);
  _mm256_store_ps(tile[2], c20); _mm256_store_ps(tile[2] + 8, c21);
  _mm256_store_ps(tile[3], c30); _mm256_store_ps(tile[3] + 8, c31);
  _mm256_store_ps(tile[4], c40); _mm256_store_ps(tile[4] + 8, c41);
  _mm256_store_ps(tile[5], c50); _mm256_store_ps(tile[5] + 8, c51);
  for (int i = 0; i < m; ++i) {
    float* out = C + i * ldc;
    for (int j = 0; j < n; ++j) {
      float v = accumulate ? out[j] + tile[i][j] : tile[i][j];
      if (bias) v += bias[j];
      out[j] = relu ? (v > 0.f ? v : 0.f) : v;
    }
  }
}

void kernel_packed_avx2(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc,
                        int m, int n, bool accumulate, const float* bias, bool relu) {
  kernel_avx2<ASrc::kPacked>(1, kc, Ap, nullptr, 0, 0, Bp, C, ldc, m, n, accumulate, bias,
                             relu);
}

void kernel_segs_avx2(int64_t nseg, int64_t seglen, const float* const* rows, int64_t stride,
                      const float* Bp, float* C, int64_t ldc, int m, int n, bool accumulate,
                      const float* bias, bool relu) {
  kernel_avx2<ASrc::kRows>(nseg, seglen, nullptr, rows, stride, 0, Bp, C, ldc, m, n,
                           accumulate, bias, relu);
}

void kernel_cols_avx2(int64_t kc, const float* const* cols, int64_t stride, int64_t off,
                      const float* Bp, float* C, int64_t ldc, int m, int n, bool accumulate,
                      const float* bias, bool relu) {
  kernel_avx2<ASrc::kCols>(1, kc, nullptr, cols, stride, off, Bp, C, ldc, m, n, accumulate,
                           bias, relu);
}

// Rows [0, MM) of S consecutive slivers: MM x S x 2 accumulators, each one chain of FMAs
// from zero over k ascending, then stored as kernel_avx2 stores a tile (plus C when
// accumulating, plus the bias, then max with zero): the same bits. A 6-row tile spends
// 12 FMAs a k on a sliver; here MM = 2 rows of two slivers take 8.
template <int MM, int S>
void edge_slivers(int64_t kc, const float* A, int64_t a_row, int64_t a_k, const float* Bp,
                  int64_t bstride, int n_last, float* C, int64_t ldc, bool accumulate,
                  const float* bias, bool relu) {
  __m256 acc[MM][S][2];
#pragma GCC unroll 4
  for (int r = 0; r < MM; ++r)
#pragma GCC unroll 4
    for (int s = 0; s < S; ++s) acc[r][s][0] = acc[r][s][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    __m256 b[S][2];
#pragma GCC unroll 4
    for (int s = 0; s < S; ++s) {
      b[s][0] = _mm256_load_ps(Bp + s * bstride + k * kNR);
      b[s][1] = _mm256_load_ps(Bp + s * bstride + k * kNR + 8);
    }
#pragma GCC unroll 4
    for (int r = 0; r < MM; ++r) {
      const __m256 x = _mm256_broadcast_ss(A + r * a_row + k * a_k);
#pragma GCC unroll 4
      for (int s = 0; s < S; ++s) {
        acc[r][s][0] = _mm256_fmadd_ps(x, b[s][0], acc[r][s][0]);
        acc[r][s][1] = _mm256_fmadd_ps(x, b[s][1], acc[r][s][1]);
      }
    }
  }
  const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int s = 0; s < S; ++s) {
    const int n = s == S - 1 ? n_last : kNR;
    const float* bs = bias ? bias + s * kNR : nullptr;
#pragma GCC unroll 4
    for (int r = 0; r < MM; ++r) {
      float* out = C + r * ldc + s * kNR;
      __m256 c0 = acc[r][s][0], c1 = acc[r][s][1];
      if (n == kNR) {
        if (accumulate) {
          c0 = _mm256_add_ps(c0, _mm256_loadu_ps(out));
          c1 = _mm256_add_ps(c1, _mm256_loadu_ps(out + 8));
        }
        if (bs) {
          c0 = _mm256_add_ps(c0, _mm256_loadu_ps(bs));
          c1 = _mm256_add_ps(c1, _mm256_loadu_ps(bs + 8));
        }
        if (relu) {
          c0 = _mm256_max_ps(c0, zero);
          c1 = _mm256_max_ps(c1, zero);
        }
        _mm256_storeu_ps(out, c0);
        _mm256_storeu_ps(out + 8, c1);
        continue;
      }
      alignas(32) float tile[kNR];
      _mm256_store_ps(tile, c0);
      _mm256_store_ps(tile + 8, c1);
      for (int j = 0; j < n; ++j) {
        float v = accumulate ? out[j] + tile[j] : tile[j];
        if (bs) v += bs[j];
        out[j] = relu ? (v > 0.f ? v : 0.f) : v;
      }
    }
  }
}

template <int MM, int S>
void edge_rows(int64_t kc, const float* A, int64_t a_row, int64_t a_k, const float* Bp,
               int64_t bstride, int64_t slivers, int n_last, float* C, int64_t ldc,
               bool accumulate, const float* bias, bool relu) {
  const int64_t full = n_last == kNR ? slivers : slivers - 1;  // groups of whole slivers
  int64_t s = 0;
  for (; s + S <= full; s += S)
    edge_slivers<MM, S>(kc, A, a_row, a_k, Bp + s * bstride, bstride, kNR, C + s * kNR, ldc,
                        accumulate, bias ? bias + s * kNR : nullptr, relu);
  for (; s < slivers; ++s)  // the rest one at a time
    edge_slivers<MM, 1>(kc, A, a_row, a_k, Bp + s * bstride, bstride,
                        s == slivers - 1 ? n_last : kNR, C + s * kNR, ldc, accumulate,
                        bias ? bias + s * kNR : nullptr, relu);
}

void edge_avx2(int64_t kc, const float* A, int64_t a_row, int64_t a_k, const float* Bp,
               int64_t bstride, int64_t slivers, int n_last, float* C, int64_t ldc, int m,
               bool accumulate, const float* bias, bool relu) {
  switch (m) {
    case 1: edge_rows<1, 4>(kc, A, a_row, a_k, Bp, bstride, slivers, n_last, C, ldc, accumulate, bias, relu); break;
    case 2: edge_rows<2, 2>(kc, A, a_row, a_k, Bp, bstride, slivers, n_last, C, ldc, accumulate, bias, relu); break;
    default: edge_rows<3, 2>(kc, A, a_row, a_k, Bp, bstride, slivers, n_last, C, ldc, accumulate, bias, relu); break;
  }
}

// A short list (at most kRegK k, e.g. the input gradient of a 10-unit output layer):
// the MM x 16 block of C stays in registers for the whole list, loaded (or zero) once
// and stored once. Each element gets the same FMAs in the same order as in small_rows.
constexpr int64_t kRegK = 16;

template <int MM>
void short_rows(int64_t N, int64_t nk, const int32_t* ks, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                bool accumulate) {
  alignas(16) float av[kRegK][MM];  // alpha * A[r, k], broadcast from memory below
  for (int64_t q = 0; q < nk; ++q)
    for (int r = 0; r < MM; ++r) av[q][r] = alpha * A[r * lda + ks[q]];
  const int64_t nv = N / 8 * 8;
  int64_t j = 0;
  for (; j + 16 <= nv; j += 16) {
    __m256 acc[MM][2];
    for (int r = 0; r < MM; ++r) {
      acc[r][0] = accumulate ? _mm256_loadu_ps(C + r * ldc + j) : _mm256_setzero_ps();
      acc[r][1] = accumulate ? _mm256_loadu_ps(C + r * ldc + j + 8) : _mm256_setzero_ps();
    }
    for (int64_t q = 0; q < nk; ++q) {
      const float* b = B + ks[q] * ldb + j;
      const __m256 w0 = _mm256_loadu_ps(b), w1 = _mm256_loadu_ps(b + 8);
      for (int r = 0; r < MM; ++r) {
        const __m256 a = _mm256_broadcast_ss(&av[q][r]);
        acc[r][0] = _mm256_fmadd_ps(a, w0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(a, w1, acc[r][1]);
      }
    }
    for (int r = 0; r < MM; ++r) {
      _mm256_storeu_ps(C + r * ldc + j, acc[r][0]);
      _mm256_storeu_ps(C + r * ldc + j + 8, acc[r][1]);
    }
  }
  for (; j < N; j += 8) {  // one vector, or the last columns (masked, as in small_rows)
    const int64_t w = N - j < 8 ? N - j : 8;
    alignas(32) int32_t lanes[8];
    for (int q = 0; q < 8; ++q) lanes[q] = q < w ? -1 : 0;
    const __m256i mask = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes));
    __m256 acc[MM];
    for (int r = 0; r < MM; ++r)
      acc[r] = accumulate ? _mm256_maskload_ps(C + r * ldc + j, mask) : _mm256_setzero_ps();
    for (int64_t q = 0; q < nk; ++q) {
      const __m256 wv = _mm256_maskload_ps(B + ks[q] * ldb + j, mask);
      for (int r = 0; r < MM; ++r)
        acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(&av[q][r]), wv, acc[r]);
    }
    for (int r = 0; r < MM; ++r) {  // plain stores: a masked store is slow on AMD Zen
      alignas(32) float out[8];
      _mm256_store_ps(out, acc[r]);
      for (int64_t c = 0; c < w; ++c) C[r * ldc + j + c] = out[c];
    }
  }
}

// Columns that fit one tile of registers (MM rows x NV vectors, at most 8
// accumulators: a batch-1 recurrent step's gate block of 64 units per thread, an output
// layer's 10 columns): the tile stays in registers for the whole list, as many
// independent chains as accumulators. Each element gets the same FMAs in the same order
// as in small_rows. The last vector is read with a masked load and stored through a
// buffer.
template <int MM, int NV>
void small_tile(int64_t j, int64_t N, int64_t nk, const int32_t* ks, float alpha,
                const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                int64_t ldc, bool accumulate) {
  const int64_t left = N - j - 8 * (NV - 1), w = left < 8 ? left : 8;  // the last vector
  alignas(32) int32_t lanes[8];
  for (int q = 0; q < 8; ++q) lanes[q] = q < w ? -1 : 0;
  const __m256i last = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes));
  __m256 acc[MM][NV];
  for (int r = 0; r < MM; ++r)
    for (int v = 0; v < NV; ++v) {
      const float* c = C + r * ldc + j + 8 * v;
      acc[r][v] = !accumulate  ? _mm256_setzero_ps()
                  : v + 1 < NV ? _mm256_loadu_ps(c)
                               : _mm256_maskload_ps(c, last);
    }
  for (int64_t q = 0; q < nk; ++q) {
    const int64_t k = ks[q];
    const float* b = B + k * ldb + j;
    __m256 wv[NV];
    for (int v = 0; v + 1 < NV; ++v) wv[v] = _mm256_loadu_ps(b + 8 * v);
    wv[NV - 1] = _mm256_maskload_ps(b + 8 * (NV - 1), last);
    for (int r = 0; r < MM; ++r) {
      const __m256 a = _mm256_set1_ps(alpha * A[r * lda + k]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(a, wv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < MM; ++r) {
    float* c = C + r * ldc + j;
    for (int v = 0; v + 1 < NV; ++v) _mm256_storeu_ps(c + 8 * v, acc[r][v]);
    alignas(32) float out[8];
    _mm256_store_ps(out, acc[r][NV - 1]);
    for (int64_t e = 0; e < w; ++e) c[8 * (NV - 1) + e] = out[e];
  }
}

// As many NV-vector tiles as fit, then halves of NV for the rest.
template <int MM, int NV>
void small_tiles(int64_t j, int64_t N, int64_t nk, const int32_t* ks, float alpha,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                 int64_t ldc, bool accumulate) {
  for (; N - j > 8 * (NV - 1); j += 8 * NV)
    small_tile<MM, NV>(j, N, nk, ks, alpha, A, lda, B, ldb, C, ldc, accumulate);
  if constexpr (NV > 1)
    if (j < N) small_tiles<MM, NV / 2>(j, N, nk, ks, alpha, A, lda, B, ldb, C, ldc, accumulate);
}

// One thread's share of the small-M path: C[r, 0:N) (+)= alpha * sum_q A[r, ks[q]]
// B[ks[q], 0:N) for the MM rows of A. The listed rows of B stream four at a time, while
// the MM rows of C (at most a few KB: the caller tiles N) stay in L1. Each C element sums
// the listed k in ascending order with one FMA per step.
template <int MM>
void small_rows(int64_t N, int64_t nk, const int32_t* ks, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                bool accumulate) {
  // Several rows take tiles up to 16 columns only: wider, streaming B below through C
  // in L1 measured faster than tiles of 8 accumulators.
  constexpr int NV = MM == 1 ? 8 : 2;
  if (N <= 8 * NV) {
    small_tiles<MM, NV>(0, N, nk, ks, alpha, A, lda, B, ldb, C, ldc, accumulate);
    return;
  }
  if (nk <= kRegK) {
    short_rows<MM>(N, nk, ks, alpha, A, lda, B, ldb, C, ldc, accumulate);
    return;
  }
  const int64_t nv = N / 8 * 8;
  if (!accumulate)
    for (int r = 0; r < MM; ++r)
      for (int64_t j = 0; j < N; ++j) C[r * ldc + j] = 0.f;
  // Columns past the last full vector: their C values ride in one register per row for
  // the whole K (lanes past N hold zeros), B read with a masked load. Each element still
  // gets one FMA per k, in order: the same bits as a scalar loop through memory, without
  // its chain of dependent loads and stores.
  const bool has_tail = nv < N;
  alignas(32) int32_t lanes[8];
  for (int q = 0; q < 8; ++q) lanes[q] = nv + q < N ? -1 : 0;
  const __m256i mask = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes));
  __m256 ct[MM];
  for (int r = 0; r < MM; ++r)
    ct[r] = has_tail ? _mm256_maskload_ps(C + r * ldc + nv, mask) : _mm256_setzero_ps();
  auto tail = [&](int r, float a, const float* b) {
    ct[r] = _mm256_fmadd_ps(_mm256_set1_ps(a), _mm256_maskload_ps(b + nv, mask), ct[r]);
  };
  int64_t q = 0;
  for (; q + 4 <= nk; q += 4) {
    const int64_t k0 = ks[q], k1 = ks[q + 1], k2 = ks[q + 2], k3 = ks[q + 3];
    __m256 a[MM][4];
    for (int r = 0; r < MM; ++r) {
      a[r][0] = _mm256_set1_ps(alpha * A[r * lda + k0]);
      a[r][1] = _mm256_set1_ps(alpha * A[r * lda + k1]);
      a[r][2] = _mm256_set1_ps(alpha * A[r * lda + k2]);
      a[r][3] = _mm256_set1_ps(alpha * A[r * lda + k3]);
    }
    const float* b0 = B + k0 * ldb;
    const float* b1 = B + k1 * ldb;
    const float* b2 = B + k2 * ldb;
    const float* b3 = B + k3 * ldb;
    for (int64_t j = 0; j < nv; j += 8) {
      const __m256 w0 = _mm256_loadu_ps(b0 + j), w1 = _mm256_loadu_ps(b1 + j);
      const __m256 w2 = _mm256_loadu_ps(b2 + j), w3 = _mm256_loadu_ps(b3 + j);
      for (int r = 0; r < MM; ++r) {
        float* c = C + r * ldc + j;
        __m256 acc = _mm256_loadu_ps(c);
        acc = _mm256_fmadd_ps(a[r][0], w0, acc);
        acc = _mm256_fmadd_ps(a[r][1], w1, acc);
        acc = _mm256_fmadd_ps(a[r][2], w2, acc);
        acc = _mm256_fmadd_ps(a[r][3], w3, acc);
        _mm256_storeu_ps(c, acc);
      }
    }
    if (has_tail)
      for (int r = 0; r < MM; ++r) {
        const float* ar = A + r * lda;
        tail(r, alpha * ar[k0], b0);
        tail(r, alpha * ar[k1], b1);
        tail(r, alpha * ar[k2], b2);
        tail(r, alpha * ar[k3], b3);
      }
  }
  for (; q < nk; ++q) {
    const float* b = B + ks[q] * ldb;
    for (int r = 0; r < MM; ++r) {
      const float av = alpha * A[r * lda + ks[q]];
      const __m256 a = _mm256_set1_ps(av);
      float* c = C + r * ldc;
      for (int64_t j = 0; j < nv; j += 8)
        _mm256_storeu_ps(c + j, _mm256_fmadd_ps(a, _mm256_loadu_ps(b + j), _mm256_loadu_ps(c + j)));
      if (has_tail) tail(r, av, b);
    }
  }
  if (has_tail)  // plain stores: a masked store is slow on some CPUs (AMD Zen)
    for (int r = 0; r < MM; ++r) {
      alignas(32) float out[8];
      _mm256_store_ps(out, ct[r]);
      for (int64_t j = nv; j < N; ++j) C[r * ldc + j] = out[j - nv];
    }
}

void small_nn_avx2(int64_t M, int64_t N, int64_t nk, const int32_t* ks, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                   int64_t ldc, bool accumulate) {
  for (int64_t i = 0; i < M; i += 4) {
    const float* a = A + i * lda;
    float* c = C + i * ldc;
    switch (M - i) {
      case 1: small_rows<1>(N, nk, ks, alpha, a, lda, B, ldb, c, ldc, accumulate); break;
      case 2: small_rows<2>(N, nk, ks, alpha, a, lda, B, ldb, c, ldc, accumulate); break;
      case 3: small_rows<3>(N, nk, ks, alpha, a, lda, B, ldb, c, ldc, accumulate); break;
      default: small_rows<4>(N, nk, ks, alpha, a, lda, B, ldb, c, ldc, accumulate); break;
    }
  }
}

// Rows [0, 16) of a narrow Aᵀ·B (i0 already applied) times columns [0, J), J <= 6: the
// 16 values of i for one k are two vectors of A's row k, each B[k, j] is broadcast, and
// 2 x J accumulators hold the tile, one FMA per k in ascending order. kMasked: fewer
// than 16 rows are left (lanes past m read as zero, never stored).
template <int J, bool kMasked>
void narrow_tile(int64_t m, int64_t K, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate,
                 const float* bias, bool relu) {
  __m256i mask0 = _mm256_setzero_si256(), mask1 = mask0;
  if (kMasked) {
    alignas(32) int32_t lanes[16];
    for (int q = 0; q < 16; ++q) lanes[q] = q < m ? -1 : 0;
    mask0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes));
    mask1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes + 8));
  }
  __m256 acc[J][2];  // in registers: every loop over c is unrolled
#pragma GCC unroll 6
  for (int c = 0; c < J; ++c) acc[c][0] = acc[c][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    const float* a = A + k * lda;
    const __m256 x0 = kMasked ? _mm256_maskload_ps(a, mask0) : _mm256_loadu_ps(a);
    const __m256 x1 = kMasked ? _mm256_maskload_ps(a + 8, mask1) : _mm256_loadu_ps(a + 8);
    const float* b = B + k * ldb;
#pragma GCC unroll 6
    for (int c = 0; c < J; ++c) {
      const __m256 bv = _mm256_broadcast_ss(b + c);
      acc[c][0] = _mm256_fmadd_ps(x0, bv, acc[c][0]);
      acc[c][1] = _mm256_fmadd_ps(x1, bv, acc[c][1]);
    }
  }
  alignas(32) float tile[J][16];
#pragma GCC unroll 6
  for (int c = 0; c < J; ++c) {
    _mm256_store_ps(tile[c], acc[c][0]);
    _mm256_store_ps(tile[c] + 8, acc[c][1]);
  }
  const int64_t rows = kMasked ? m : 16;
  if (alpha == 1.f && !accumulate && !bias && !relu) {  // a plain weight gradient
    for (int64_t r = 0; r < rows; ++r)
#pragma GCC unroll 6
      for (int c = 0; c < J; ++c) C[r * ldc + c] = tile[c][r];
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    float* out = C + r * ldc;
    for (int c = 0; c < J; ++c) {
      float v = alpha * tile[c][r];
      if (accumulate) v += out[c];
      if (bias) v += bias[c];
      out[c] = relu ? (v > 0.f ? v : 0.f) : v;
    }
  }
}

template <bool kMasked>
void narrow_rows(int64_t m, int64_t n, int64_t K, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate,
                 const float* bias, bool relu) {
  for (int64_t j = 0; j < n; j += 6) {
    const float* bj = bias ? bias + j : nullptr;
    switch (n - j < 6 ? n - j : 6) {
      case 1: narrow_tile<1, kMasked>(m, K, alpha, A, lda, B + j, ldb, C + j, ldc, accumulate, bj, relu); break;
      case 2: narrow_tile<2, kMasked>(m, K, alpha, A, lda, B + j, ldb, C + j, ldc, accumulate, bj, relu); break;
      case 3: narrow_tile<3, kMasked>(m, K, alpha, A, lda, B + j, ldb, C + j, ldc, accumulate, bj, relu); break;
      case 4: narrow_tile<4, kMasked>(m, K, alpha, A, lda, B + j, ldb, C + j, ldc, accumulate, bj, relu); break;
      case 5: narrow_tile<5, kMasked>(m, K, alpha, A, lda, B + j, ldb, C + j, ldc, accumulate, bj, relu); break;
      default: narrow_tile<6, kMasked>(m, K, alpha, A, lda, B + j, ldb, C + j, ldc, accumulate, bj, relu); break;
    }
  }
}

void narrow_tn_avx2(int64_t m, int64_t n, int64_t K, float alpha, const float* A,
                    int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                    bool accumulate, const float* bias, bool relu) {
  int64_t i = 0;
  for (; i + 16 <= m; i += 16)
    narrow_rows<false>(16, n, K, alpha, A + i, lda, B, ldb, C + i * ldc, ldc, accumulate,
                       bias, relu);
  if (i < m)
    narrow_rows<true>(m - i, n, K, alpha, A + i, lda, B, ldb, C + i * ldc, ldc, accumulate,
                      bias, relu);
}

// Sums of the eight lanes of a..h, in that order, each as ((0+1)+(2+3)) + ((4+5)+(6+7)).
inline __m256 lane_sums8(__m256 a, __m256 b, __m256 c, __m256 d, __m256 e, __m256 f,
                         __m256 g, __m256 h) {
  // hadd pairs neighbouring lanes within each 128-bit half; the halves meet last.
  const __m256 ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d);
  const __m256 ef = _mm256_hadd_ps(e, f), gh = _mm256_hadd_ps(g, h);
  const __m256 abcd = _mm256_hadd_ps(ab, cd), efgh = _mm256_hadd_ps(ef, gh);
  return _mm256_add_ps(_mm256_permute2f128_ps(abcd, efgh, 0x20),
                       _mm256_permute2f128_ps(abcd, efgh, 0x31));
}

// R rows of A (R <= 4) dotted with NC rows of Bt (NC <= 3): R x NC accumulators over
// eight k a step; the last K % 8 through masked loads (lanes past K read as zero).
template <int R, int NC>
void narrow_dots(int64_t K, float alpha, const float* A, int64_t lda, const float* Bt,
                 int64_t ldbt, float* C, int64_t ldc, bool accumulate, const float* bias,
                 bool relu) {
  __m256 acc[4][3];
#pragma GCC unroll 4
  for (int r = 0; r < 4; ++r)
#pragma GCC unroll 3
    for (int c = 0; c < 3; ++c) acc[r][c] = _mm256_setzero_ps();
  auto step = [&](const __m256* b, int64_t k, const __m256i* mask) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 a = mask ? _mm256_maskload_ps(A + r * lda + k, *mask)
                            : _mm256_loadu_ps(A + r * lda + k);
#pragma GCC unroll 3
      for (int c = 0; c < NC; ++c) acc[r][c] = _mm256_fmadd_ps(a, b[c], acc[r][c]);
    }
  };
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 b[3];
#pragma GCC unroll 3
    for (int c = 0; c < NC; ++c) b[c] = _mm256_loadu_ps(Bt + c * ldbt + k);
    step(b, k, nullptr);
  }
  if (k < K) {
    alignas(32) int32_t lanes[8];
    for (int q = 0; q < 8; ++q) lanes[q] = k + q < K ? -1 : 0;
    const __m256i mask = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes));
    __m256 b[3];
#pragma GCC unroll 3
    for (int c = 0; c < NC; ++c) b[c] = _mm256_maskload_ps(Bt + c * ldbt + k, mask);
    step(b, k, &mask);
  }
  // All twelve sums at once (unused accumulators are zero); sums[r * 3 + c].
  alignas(32) float sums[16];
  _mm256_store_ps(sums, lane_sums8(acc[0][0], acc[0][1], acc[0][2], acc[1][0], acc[1][1],
                                   acc[1][2], acc[2][0], acc[2][1]));
  _mm256_store_ps(sums + 8, lane_sums8(acc[2][2], acc[3][0], acc[3][1], acc[3][2],
                                       _mm256_setzero_ps(), _mm256_setzero_ps(),
                                       _mm256_setzero_ps(), _mm256_setzero_ps()));
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NC; ++c) {
      float v = alpha * sums[r * 3 + c];
      float* out = C + r * ldc + c;
      if (accumulate) v += *out;
      if (bias) v += bias[c];
      *out = relu ? (v > 0.f ? v : 0.f) : v;
    }
}

template <int R>
void narrow_dot_rows(int64_t n, int64_t K, float alpha, const float* A, int64_t lda,
                     const float* Bt, int64_t ldbt, float* C, int64_t ldc, bool accumulate,
                     const float* bias, bool relu) {
  int64_t j = 0;
  for (; j + 3 <= n; j += 3)
    narrow_dots<R, 3>(K, alpha, A, lda, Bt + j * ldbt, ldbt, C + j, ldc, accumulate,
                      bias ? bias + j : nullptr, relu);
  if (n - j == 2)
    narrow_dots<R, 2>(K, alpha, A, lda, Bt + j * ldbt, ldbt, C + j, ldc, accumulate,
                      bias ? bias + j : nullptr, relu);
  else if (n - j == 1)
    narrow_dots<R, 1>(K, alpha, A, lda, Bt + j * ldbt, ldbt, C + j, ldc, accumulate,
                      bias ? bias + j : nullptr, relu);
}

void narrow_nn_avx2(int64_t m, int64_t n, int64_t K, float alpha, const float* A,
                    int64_t lda, const float* Bt, int64_t ldbt, float* C, int64_t ldc,
                    bool accumulate, const float* bias, bool relu) {
  for (int64_t i = 0; i < m; i += 4) {
    const float* a = A + i * lda;
    float* c = C + i * ldc;
    switch (m - i < 4 ? m - i : 4) {
      case 1: narrow_dot_rows<1>(n, K, alpha, a, lda, Bt, ldbt, c, ldc, accumulate, bias, relu); break;
      case 2: narrow_dot_rows<2>(n, K, alpha, a, lda, Bt, ldbt, c, ldc, accumulate, bias, relu); break;
      case 3: narrow_dot_rows<3>(n, K, alpha, a, lda, Bt, ldbt, c, ldc, accumulate, bias, relu); break;
      default: narrow_dot_rows<4>(n, K, alpha, a, lda, Bt, ldbt, c, ldc, accumulate, bias, relu); break;
    }
  }
}

}  // namespace

const GemmKernel* gemm_kernel_avx2() {
  static const GemmKernel k{"avx2_fma_6x16", kMR, kNR, kernel_packed_avx2, kernel_segs_avx2,
                            small_nn_avx2, narrow_tn_avx2, narrow_nn_avx2, edge_avx2,
                            kernel_cols_avx2};
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &k;
  return nullptr;
}

}  // namespace ember

#else  // not an x86-64 build with AVX2 flags: only the generic kernel exists

namespace ember {
const GemmKernel* gemm_kernel_avx2() { return nullptr; }
}  // namespace ember

#endif
