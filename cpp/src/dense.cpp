// dense.cpp: Dense forward and backward over the GEMM, and their references.
#include "ember/dense.h"

#include <algorithm>

#include "ember/gemm.h"
#include "ember/parallel.h"
#include "ember/vector_isa.h"

namespace ember {

namespace {
#define EMBER_VECTOR_LOOPS "dense_loops.inc"
#include "ember/vector_variants.inc"
}  // namespace

void column_sums(const float* src, int64_t rows, int64_t cols, int64_t ld, float* dst,
                 bool accumulate) {
  EMBER_VECTOR_CALL(column_sums, src, rows, cols, ld, dst, accumulate);
}

// x (n, in), w (in, out), b (out), y (n, out): y = act(x w + b). Bias and relu ride
// in the GEMM epilogue; other activations run over y afterwards.
void dense_forward(const float* x, const float* w, const float* b, float* y, int64_t n,
                   int64_t in, int64_t out, Act act, bool training) {
  Epilogue ep;
  ep.bias = b;
  ep.relu = act == Act::Relu;
  ep.b_just_written = training;
  sgemm(Trans::N, Trans::N, n, out, in, 1.f, x, in, w, out, 0.f, y, out, &ep);
  if (act != Act::Linear && act != Act::Relu) act_forward(act, y, y, n, out);
}

// dz (n, out): dw = x^T dz (in, out); db = column sums of dz; dx = dz w^T (n, in).
// Each of dw, db and dx is skipped when null (a frozen variable, the first layer).
void dense_backward(const float* x, const float* w, const float* dz, float* dx,
                    float* dw, float* db, int64_t n, int64_t in, int64_t out) {
  if (dw) sgemm(Trans::T, Trans::N, in, out, n, 1.f, x, in, dz, out, 0.f, dw, out);
  if (db) column_sums(dz, n, out, out, db, false);
  if (dx) sgemm(Trans::N, Trans::T, n, in, out, 1.f, dz, out, w, out, 0.f, dx, in);
}

template <class T>
void dense_forward_ref(const T* x, const T* w, const T* b, T* y, int64_t n, int64_t in,
                       int64_t out, Act act) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < out; ++j) {
      T s = b ? b[j] : T(0);
      for (int64_t k = 0; k < in; ++k) s += x[i * in + k] * w[k * out + j];
      y[i * out + j] = s;
    }
  act_forward(act, y, y, n, out);
}

template <class T>
void dense_backward_ref(const T* x, const T* w, const T* dz, T* dx, T* dw, T* db,
                        int64_t n, int64_t in, int64_t out) {
  for (int64_t k = 0; k < in; ++k)
    for (int64_t j = 0; j < out; ++j) {
      T s = 0;
      for (int64_t i = 0; i < n; ++i) s += x[i * in + k] * dz[i * out + j];
      dw[k * out + j] = s;
    }
  if (db)
    for (int64_t j = 0; j < out; ++j) {
      T s = 0;
      for (int64_t i = 0; i < n; ++i) s += dz[i * out + j];
      db[j] = s;
    }
  if (dx)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < in; ++k) {
        T s = 0;
        for (int64_t j = 0; j < out; ++j) s += dz[i * out + j] * w[k * out + j];
        dx[i * in + k] = s;
      }
}

template void dense_forward_ref<float>(const float*, const float*, const float*, float*,
                                       int64_t, int64_t, int64_t, Act);
template void dense_forward_ref<double>(const double*, const double*, const double*,
                                        double*, int64_t, int64_t, int64_t, Act);
template void dense_backward_ref<float>(const float*, const float*, const float*, float*,
                                        float*, float*, int64_t, int64_t, int64_t);
template void dense_backward_ref<double>(const double*, const double*, const double*,
                                         double*, double*, double*, int64_t, int64_t,
                                         int64_t);

}  // namespace ember
