// gemm_kernel_generic.cpp: the portable MR x NR micro-kernel (plain C++; the
// compiler vectorises the NR loop with whatever the baseline ISA offers).
#include "ember/gemm.h"

namespace ember {
namespace {

constexpr int kMR = 4;
constexpr int kNR = 8;

// Writes (or adds) the m x n corner of the register tile c to C, then the epilogue.
void store_tile(const float (&c)[kMR][kNR], float* C, int64_t ldc, int m, int n,
                bool accumulate, const float* bias, bool relu) {
  for (int i = 0; i < m; ++i) {
    float* row = C + i * ldc;
    for (int j = 0; j < n; ++j) {
      float v = accumulate ? row[j] + c[i][j] : c[i][j];
      if (bias) v += bias[j];
      row[j] = relu ? (v > 0.f ? v : 0.f) : v;
    }
  }
}

// Ap: kc columns of kMR values; Bp: kc rows of kNR values. c accumulates in
// registers over k ascending, then is stored (or added) to the m x n corner of C.
void kernel_generic(int64_t kc, const float* Ap, const float* Bp, float* C,
                    int64_t ldc, int m, int n, bool accumulate, const float* bias, bool relu) {
  float c[kMR][kNR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const float* a = Ap + k * kMR;
    const float* b = Bp + k * kNR;
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNR; ++j) c[i][j] += a[i] * b[j];
  }
  store_tile(c, C, ldc, m, n, accumulate, bias, relu);
}

// The same over unpacked rows of A: row i (i < m) is nseg segments of seglen
// contiguous floats, segment t at rows[i * stride + t]; rows past m are never read.
void kernel_segs_generic(int64_t nseg, int64_t seglen, const float* const* rows,
                         int64_t stride, const float* Bp, float* C, int64_t ldc, int m, int n,
                         bool accumulate, const float* bias, bool relu) {
  float c[kMR][kNR] = {};
  const float* b = Bp;
  for (int64_t t = 0; t < nseg; ++t)
    for (int64_t k = 0; k < seglen; ++k, b += kNR)
      for (int i = 0; i < m; ++i) {
        const float a = rows[i * stride + t][k];
        for (int j = 0; j < kNR; ++j) c[i][j] += a * b[j];
      }
  store_tile(c, C, ldc, m, n, accumulate, bias, relu);
}

void small_nn_generic(int64_t M, int64_t N, int64_t nk, const int32_t* ks, float alpha,
                      const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                      int64_t ldc, bool accumulate) {
  constexpr int64_t kCols = 64;
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j0 = 0; j0 < N; j0 += kCols) {
      const int64_t w = N - j0 < kCols ? N - j0 : kCols;
      float acc[kCols] = {};
      for (int64_t q = 0; q < nk; ++q) {
        const float a = alpha * A[i * lda + ks[q]];
        const float* b = B + ks[q] * ldb + j0;
        for (int64_t j = 0; j < w; ++j) acc[j] += a * b[j];
      }
      float* c = C + i * ldc + j0;
      for (int64_t j = 0; j < w; ++j) c[j] = accumulate ? c[j] + acc[j] : acc[j];
    }
  }
}

void narrow_tn_generic(int64_t m, int64_t n, int64_t K, float alpha, const float* A,
                       int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                       bool accumulate, const float* bias, bool relu) {
  constexpr int64_t kRows = 16;
  for (int64_t i0 = 0; i0 < m; i0 += kRows) {
    const int64_t rows = m - i0 < kRows ? m - i0 : kRows;
    float acc[kNarrowN][kRows] = {};
    for (int64_t k = 0; k < K; ++k) {
      const float* a = A + k * lda + i0;
      const float* b = B + k * ldb;
      for (int64_t j = 0; j < n; ++j)
        for (int64_t r = 0; r < rows; ++r) acc[j][r] += a[r] * b[j];
    }
    for (int64_t r = 0; r < rows; ++r) {
      float* c = C + (i0 + r) * ldc;
      for (int64_t j = 0; j < n; ++j) {
        float v = alpha * acc[j][r];
        if (accumulate) v += c[j];
        if (bias) v += bias[j];
        c[j] = relu ? (v > 0.f ? v : 0.f) : v;
      }
    }
  }
}

void narrow_nn_generic(int64_t m, int64_t n, int64_t K, float alpha, const float* A,
                       int64_t lda, const float* Bt, int64_t ldbt, float* C, int64_t ldc,
                       bool accumulate, const float* bias, bool relu) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const float* a = A + i * lda;
      const float* b = Bt + j * ldbt;
      float lane[8] = {};  // k mod 8, as the vector kernel keeps them
      for (int64_t k = 0; k < K; ++k) lane[k % 8] += a[k] * b[k];
      const float s = ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
                      ((lane[4] + lane[5]) + (lane[6] + lane[7]));
      float* c = C + i * ldc + j;
      float v = alpha * s;
      if (accumulate) v += *c;
      if (bias) v += bias[j];
      *c = relu ? (v > 0.f ? v : 0.f) : v;
    }
}

}  // namespace

const GemmKernel& gemm_kernel_generic() {
  static const GemmKernel k{"generic", kMR, kNR, kernel_generic, kernel_segs_generic,
                            small_nn_generic, narrow_tn_generic, narrow_nn_generic, nullptr};
  return k;
}

}  // namespace ember
