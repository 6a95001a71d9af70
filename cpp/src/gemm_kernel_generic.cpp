// gemm_kernel_generic.cpp: the portable MR x NR micro-kernel (plain C++; the
// compiler vectorises the NR loop with whatever the baseline ISA offers).
#include "ember/gemm.h"

namespace ember {
namespace {

constexpr int kMR = 4;
constexpr int kNR = 8;

// Ap: kc columns of kMR values; Bp: kc rows of kNR values. c accumulates in
// registers over k ascending, then is stored (or added) to the m x n corner of C.
void kernel_generic(int64_t kc, const float* Ap, const float* Bp, float* C,
                    int64_t ldc, int m, int n, bool accumulate) {
  float c[kMR][kNR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const float* a = Ap + k * kMR;
    const float* b = Bp + k * kNR;
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNR; ++j) c[i][j] += a[i] * b[j];
  }
  for (int i = 0; i < m; ++i) {
    float* row = C + i * ldc;
    if (accumulate)
      for (int j = 0; j < n; ++j) row[j] += c[i][j];
    else
      for (int j = 0; j < n; ++j) row[j] = c[i][j];
  }
}

}  // namespace

const GemmKernel& gemm_kernel_generic() {
  static const GemmKernel k{"generic", kMR, kNR, kernel_generic};
  return k;
}

}  // namespace ember
