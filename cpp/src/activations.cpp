// activations.cpp: linear, relu, sigmoid, tanh and softmax, forward and backward.
#include "ember/activations.h"

#include <cmath>
#include <stdexcept>

namespace ember {

Act act_from_string(const std::string& name) {
  if (name == "linear" || name.empty()) return Act::Linear;
  if (name == "relu") return Act::Relu;
  if (name == "sigmoid") return Act::Sigmoid;
  if (name == "tanh") return Act::Tanh;
  if (name == "softmax") return Act::Softmax;
  throw std::invalid_argument("Unknown activation: '" + name +
                              "'. Expected one of linear, relu, sigmoid, tanh, softmax");
}

const char* act_name(Act a) {
  switch (a) {
    case Act::Linear: return "linear";
    case Act::Relu: return "relu";
    case Act::Sigmoid: return "sigmoid";
    case Act::Tanh: return "tanh";
    case Act::Softmax: return "softmax";
  }
  return "?";
}

namespace {
// Parallel only when there is enough work to pay for waking the pool.
constexpr int64_t kParallelMin = 1 << 15;

// body(i) for i in [0, count): on the pool when the work (floats touched) is over
// kParallelMin, else inline, with no OpenMP construct at all (one whose if clause is
// false still builds a one-thread team: 0.4 µs, a fifth of a batch-1 output layer).
template <class F>
void for_each(int64_t count, int64_t work, F body) {
  if (work > kParallelMin) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; ++i) body(i);
  } else {
    for (int64_t i = 0; i < count; ++i) body(i);
  }
}
}

template <class T>
void act_forward(Act a, const T* x, T* y, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  switch (a) {
    case Act::Linear:
      if (y != x)
        for (int64_t i = 0; i < n; ++i) y[i] = x[i];
      break;
    case Act::Relu:
      for_each(n, n, [&](int64_t i) { y[i] = x[i] > T(0) ? x[i] : T(0); });
      break;
    case Act::Sigmoid:
      for_each(n, n, [&](int64_t i) { y[i] = T(1) / (T(1) + std::exp(-x[i])); });
      break;
    case Act::Tanh:
      for_each(n, n, [&](int64_t i) { y[i] = std::tanh(x[i]); });
      break;
    case Act::Softmax:
      for_each(rows, n, [&](int64_t r) {
        const T* xr = x + r * cols;
        T* yr = y + r * cols;
        T mx = xr[0];
        for (int64_t j = 1; j < cols; ++j) mx = xr[j] > mx ? xr[j] : mx;
        T sum = 0;
        for (int64_t j = 0; j < cols; ++j) {
          yr[j] = std::exp(xr[j] - mx);
          sum += yr[j];
        }
        const T inv = T(1) / sum;
        for (int64_t j = 0; j < cols; ++j) yr[j] *= inv;
      });
      break;
  }
}

template <class T>
void act_backward(Act a, const T* y, const T* dy, T* dx, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  switch (a) {
    case Act::Linear:
      if (dx != dy)
        for (int64_t i = 0; i < n; ++i) dx[i] = dy[i];
      break;
    case Act::Relu:  // relu'(0) = 0, as Keras
      for_each(n, n, [&](int64_t i) { dx[i] = y[i] > T(0) ? dy[i] : T(0); });
      break;
    case Act::Sigmoid:
      for_each(n, n, [&](int64_t i) { dx[i] = dy[i] * y[i] * (T(1) - y[i]); });
      break;
    case Act::Tanh:
      for_each(n, n, [&](int64_t i) { dx[i] = dy[i] * (T(1) - y[i] * y[i]); });
      break;
    case Act::Softmax:
      // dx_j = sum_k dy_k dy_k/dx_j = y_j (dy_j - sum_k dy_k y_k)
      for_each(rows, n, [&](int64_t r) {
        const T* yr = y + r * cols;
        const T* dyr = dy + r * cols;
        T* dxr = dx + r * cols;
        T dot = 0;
        for (int64_t j = 0; j < cols; ++j) dot += dyr[j] * yr[j];
        for (int64_t j = 0; j < cols; ++j) dxr[j] = yr[j] * (dyr[j] - dot);
      });
      break;
  }
}

template void act_forward<float>(Act, const float*, float*, int64_t, int64_t);
template void act_forward<double>(Act, const double*, double*, int64_t, int64_t);
template void act_backward<float>(Act, const float*, const float*, float*, int64_t, int64_t);
template void act_backward<double>(Act, const double*, const double*, double*, int64_t,
                                   int64_t);

}  // namespace ember
