// dense.h: Dense layer, y = act(x W + b), forward and backward.
#pragma once
#include <cstdint>
#include "ember/activations.h"

namespace ember {

// x (n, in), w (in, out) (Keras layout), b (out) or null, y (n, out). `training`: w was
// just updated by the optimizer (see Epilogue::b_just_written).
void dense_forward(const float* x, const float* w, const float* b, float* y,
                   int64_t n, int64_t in, int64_t out, Act act, bool training = false);

// dz (n, out) is the gradient at the pre-activation (the caller applies
// act_backward first). Writes dw (in, out) = x^T dz, db (out) = sum_n dz and
// dx (n, in) = dz w^T, each unless null (a frozen variable, the first layer).
void dense_backward(const float* x, const float* w, const float* dz, float* dx,
                    float* dw, float* db, int64_t n, int64_t in, int64_t out);

// dst[j] (+)= the sum over rows of src[r * ld + j], j < cols, rows added in order (the
// bits do not depend on the thread count); the whole sum is added to dst when accumulating.
void column_sums(const float* src, int64_t rows, int64_t cols, int64_t ld, float* dst,
                 bool accumulate);

// Plain references in any precision, for tests and float64 gradient checks.
template <class T>
void dense_forward_ref(const T* x, const T* w, const T* b, T* y, int64_t n,
                       int64_t in, int64_t out, Act act);
template <class T>
void dense_backward_ref(const T* x, const T* w, const T* dz, T* dx, T* dw, T* db,
                        int64_t n, int64_t in, int64_t out);

}  // namespace ember
