// activations.cpp: Keras's activations, forward and backward.
#include "ember/activations.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <type_traits>

#include "ember/parallel.h"
#include "ember/vector_isa.h"
#include "vector_math.h"

namespace ember {
namespace {

struct Named {
  const char* name;
  Act act;
};
constexpr Named kNames[] = {
    {"linear", Act::Linear}, {"relu", Act::Relu}, {"sigmoid", Act::Sigmoid},
    {"tanh", Act::Tanh}, {"softmax", Act::Softmax}, {"elu", Act::Elu}, {"selu", Act::Selu},
    {"softplus", Act::Softplus}, {"softsign", Act::Softsign},
    {"leaky_relu", Act::LeakyRelu}, {"relu6", Act::Relu6},
    {"hard_sigmoid", Act::HardSigmoid}, {"exponential", Act::Exponential},
    {"log_softmax", Act::LogSoftmax}, {"gelu", Act::Gelu},
    {"gelu_approximate", Act::GeluApprox}, {"silu", Act::Silu}, {"mish", Act::Mish},
    {"hard_silu", Act::HardSilu}};

// Keras's SELU constants.
constexpr double kSeluScale = 1.0507009873554805;
constexpr double kSeluAlpha = 1.6732632423543772;
constexpr double kSqrt2OverPi = 0.7978845608028654;  // sqrt(2 / pi)

// Parallel only when there is enough work to pay for waking the pool.
constexpr int64_t kParallelMin = 1 << 15;

#define EMBER_VECTOR_LOOPS "activations_loops.inc"
#include "ember/vector_variants.inc"

template <class F>
void for_each(int64_t count, int64_t work, F body) {
  EMBER_VECTOR_CALL(for_each, count, work, body);
}

double resolve(Act a, float alpha) {
  if (!std::isnan(alpha)) return alpha;
  return a == Act::LeakyRelu ? 0.2 : 1.0;
}

template <class T>
T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }

template <class T>
T softplus(T x) {  // log(1 + e^x) without overflow
  return (x > T(0) ? x : T(0)) + std::log1p(std::exp(-std::abs(x)));
}

template <class T>
T relu6(T x) { return x < T(0) ? T(0) : (x > T(6) ? T(6) : x); }

}  // namespace

Act act_from_string(const std::string& name) {
  if (name.empty()) return Act::Linear;
  if (name == "swish") return Act::Silu;
  if (name == "hard_swish") return Act::HardSilu;
  for (const Named& n : kNames)
    if (name == n.name) return n.act;
  std::string known;
  for (const Named& n : kNames) known += std::string(known.empty() ? "" : ", ") + n.name;
  throw std::invalid_argument("Unknown activation: '" + name + "'. Expected one of " + known);
}

const char* act_name(Act a) {
  for (const Named& n : kNames)
    if (n.act == a) return n.name;
  return "?";
}

bool act_needs_input(Act a) {
  return a == Act::Gelu || a == Act::GeluApprox || a == Act::Silu || a == Act::Mish ||
         a == Act::HardSilu;
}

// Softmax (or log-softmax) of one row of n floats, sixteen at a time: the maximum,
// e^(x - max) by expv into y with their sum taken lane by lane (then the lanes in
// order), then y scaled by 1 / sum (or y = x - max - log(sum)). Terms below e^-87
// (about 1e-38) count as 0.
EMBER_INLINE void softmax_row(const float* x, float* y, int64_t n, bool log) {
  const float mx = row_max(x, n);
  const float sum = sum_exp(x, n, mx, log ? nullptr : y);
  if (log) {
    const float lse = mx + std::log(sum);
    for (int64_t j = 0; j < n; ++j) y[j] = x[j] - lse;
  } else {
    const float inv = 1.f / sum;
    for (int64_t j = 0; j < n; ++j) y[j] *= inv;
  }
}

template <class T>
void act_forward(Act a, const T* x, T* y, int64_t rows, int64_t cols, float alpha_in) {
  const int64_t n = rows * cols;
  const T alpha = static_cast<T>(resolve(a, alpha_in));
  auto each = [&](auto f) { for_each(n, n, [&](int64_t i) { y[i] = f(x[i]); }); };
  // In float, sigmoid, silu, tanh and gelu take sixteen values at a time
  // (vector_math.h: polynomials within a few ulp of the C library), the last block
  // padded.
  auto each16 = [&](auto f) {
    for_each((n + kLanes - 1) / kLanes, n, [&](int64_t b) EMBER_INLINE_LAMBDA {
      const int64_t i = b * kLanes, m = std::min<int64_t>(kLanes, n - i);
      vf v{};
      std::memcpy(&v, x + i, sizeof(float) * m);
      v = f(v);
      std::memcpy(y + i, &v, sizeof(float) * m);
    });
  };
  constexpr bool single = std::is_same<T, float>::value;
  switch (a) {
    case Act::Linear:
      if (y != x)
        for (int64_t i = 0; i < n; ++i) y[i] = x[i];
      break;
    case Act::Relu: each([](T v) { return v > T(0) ? v : T(0); }); break;
    case Act::Sigmoid:
      if constexpr (single)
        each16([](vf v) EMBER_INLINE_LAMBDA { return sigmoidv(v); });
      else
        each([](T v) { return sigmoid(v); });
      break;
    case Act::Tanh:
      if constexpr (single)
        each16([](vf v) EMBER_INLINE_LAMBDA { return tanhv(v); });
      else
        each([](T v) { return std::tanh(v); });
      break;
    case Act::Elu: each([&](T v) { return v > T(0) ? v : alpha * std::expm1(v); }); break;
    case Act::Selu:
      each([](T v) {
        return T(kSeluScale) * (v > T(0) ? v : T(kSeluAlpha) * std::expm1(v));
      });
      break;
    case Act::Softplus: each([](T v) { return softplus(v); }); break;
    case Act::Softsign: each([](T v) { return v / (T(1) + std::abs(v)); }); break;
    case Act::LeakyRelu: each([&](T v) { return v > T(0) ? v : alpha * v; }); break;
    case Act::Relu6: each([](T v) { return relu6(v); }); break;
    case Act::HardSigmoid: each([](T v) { return relu6(v + T(3)) / T(6); }); break;
    case Act::Exponential: each([](T v) { return std::exp(v); }); break;
    case Act::Gelu:  // x Phi(x)
      if constexpr (single) {
        const float root2 = std::sqrt(2.f);
        each16([root2](vf v) EMBER_INLINE_LAMBDA {
          return 0.5f * v * (1.f + erfv(v / root2));
        });
      } else {
        each([](T v) { return T(0.5) * v * (T(1) + std::erf(v / std::sqrt(T(2)))); });
      }
      break;
    case Act::GeluApprox:
      if constexpr (single)
        each16([](vf v) EMBER_INLINE_LAMBDA {
          return 0.5f * v *
                 (1.f + tanhv(float(kSqrt2OverPi) * (v + 0.044715f * v * v * v)));
        });
      else
        each([](T v) {
          return T(0.5) * v *
                 (T(1) + std::tanh(T(kSqrt2OverPi) * (v + T(0.044715) * v * v * v)));
        });
      break;
    case Act::Silu:
      if constexpr (single)
        each16([](vf v) EMBER_INLINE_LAMBDA { return v * sigmoidv(v); });
      else
        each([](T v) { return v * sigmoid(v); });
      break;
    case Act::Mish: each([](T v) { return v * std::tanh(softplus(v)); }); break;
    case Act::HardSilu: each([](T v) { return v * relu6(v + T(3)) / T(6); }); break;
    case Act::Softmax:
    case Act::LogSoftmax: {
      const bool log = a == Act::LogSoftmax;
      if constexpr (single) {
        for_each(rows, n, [&](int64_t r) EMBER_INLINE_LAMBDA {
          softmax_row(x + r * cols, y + r * cols, cols, log);
        });
        break;
      }
      for_each(rows, n, [&](int64_t r) {
        const T* xr = x + r * cols;
        T* yr = y + r * cols;
        T mx = xr[0];
        for (int64_t j = 1; j < cols; ++j) mx = xr[j] > mx ? xr[j] : mx;
        T sum = 0;
        for (int64_t j = 0; j < cols; ++j) sum += std::exp(xr[j] - mx);
        if (log) {
          const T lse = mx + std::log(sum);
          for (int64_t j = 0; j < cols; ++j) yr[j] = xr[j] - lse;
        } else {
          const T inv = T(1) / sum;
          for (int64_t j = 0; j < cols; ++j) yr[j] = std::exp(xr[j] - mx) * inv;
        }
      });
      break;
    }
  }
}

template <class T>
void act_backward(Act a, const T* y, const T* dy, T* dx, int64_t rows, int64_t cols,
                  float alpha_in, const T* x) {
  const int64_t n = rows * cols;
  const T alpha = static_cast<T>(resolve(a, alpha_in));
  if (act_needs_input(a) && !x)
    throw std::invalid_argument(std::string("act_backward: ") + act_name(a) +
                                " needs the input");
  // dx_i = dy_i * g(y_i) or g(x_i, y_i).
  auto from_y = [&](auto g) { for_each(n, n, [&](int64_t i) { dx[i] = dy[i] * g(y[i]); }); };
  auto from_x = [&](auto g) { for_each(n, n, [&](int64_t i) { dx[i] = dy[i] * g(x[i]); }); };
  // In float, the derivatives that need erf, e^x or tanh of x take sixteen at a time.
  auto from_x16 = [&](auto g) {
    for_each((n + kLanes - 1) / kLanes, n, [&](int64_t b) EMBER_INLINE_LAMBDA {
      const int64_t i = b * kLanes, m = std::min<int64_t>(kLanes, n - i);
      vf v{}, d{};
      std::memcpy(&v, x + i, sizeof(float) * m);
      std::memcpy(&d, dy + i, sizeof(float) * m);
      d = d * g(v);
      std::memcpy(dx + i, &d, sizeof(float) * m);
    });
  };
  constexpr bool single = std::is_same<T, float>::value;
  switch (a) {
    case Act::Linear:
      if (dx != dy)
        for (int64_t i = 0; i < n; ++i) dx[i] = dy[i];
      break;
    case Act::Relu:  // relu'(0) = 0, as Keras
      // Both loads unconditional and the pointers copied: a select the loop vectorizes
      // (a branch on the sign mispredicts on about half of the elements).
      for_each(n, n, [y, dy, dx](int64_t i) {
        const T d = dy[i];
        dx[i] = y[i] > T(0) ? d : T(0);
      });
      break;
    case Act::Sigmoid: from_y([](T v) { return v * (T(1) - v); }); break;
    case Act::Tanh: from_y([](T v) { return T(1) - v * v; }); break;
    // y = alpha (e^x - 1) below 0, so e^x alpha = y + alpha.
    case Act::Elu: from_y([&](T v) { return v > T(0) ? T(1) : v + alpha; }); break;
    case Act::Selu:
      from_y([](T v) { return v > T(0) ? T(kSeluScale) : v + T(kSeluScale * kSeluAlpha); });
      break;
    // softplus' = sigmoid(x) = 1 - e^-y;  softsign' = 1 / (1 + |x|)^2 = (1 - |y|)^2.
    case Act::Softplus: from_y([](T v) { return -std::expm1(-v); }); break;
    case Act::Softsign: from_y([](T v) { return (T(1) - std::abs(v)) * (T(1) - std::abs(v)); }); break;
    case Act::LeakyRelu: from_y([&](T v) { return v > T(0) ? T(1) : alpha; }); break;
    case Act::Relu6: from_y([](T v) { return v > T(0) && v < T(6) ? T(1) : T(0); }); break;
    case Act::HardSigmoid:
      from_y([](T v) { return v > T(0) && v < T(1) ? T(1) / T(6) : T(0); });
      break;
    case Act::Exponential: from_y([](T v) { return v; }); break;
    case Act::Gelu:  // Phi(x) + x phi(x)
      if constexpr (single) {
        const float root2 = std::sqrt(2.f);
        from_x16([root2](vf v) EMBER_INLINE_LAMBDA {
          return 0.5f * (1.f + erfv(v / root2)) +
                 v * expv(-0.5f * v * v) * 0.3989422804014327f;
        });
      } else {
        from_x([](T v) {
          return T(0.5) * (T(1) + std::erf(v / std::sqrt(T(2)))) +
                 v * std::exp(T(-0.5) * v * v) * T(0.3989422804014327);
        });
      }
      break;
    case Act::GeluApprox:  // u = sqrt(2/pi) (x + 0.044715 x^3), t = tanh(u)
      if constexpr (single) {
        from_x16([](vf v) EMBER_INLINE_LAMBDA {
          const vf t = tanhv(float(kSqrt2OverPi) * (v + 0.044715f * v * v * v));
          return 0.5f * (1.f + t) +
                 0.5f * v * (1.f - t * t) * float(kSqrt2OverPi) * (1.f + 0.134145f * v * v);
        });
      } else {
        from_x([](T v) {
          const T t = std::tanh(T(kSqrt2OverPi) * (v + T(0.044715) * v * v * v));
          return T(0.5) * (T(1) + t) +
                 T(0.5) * v * (T(1) - t * t) * T(kSqrt2OverPi) * (T(1) + T(0.134145) * v * v);
        });
      }
      break;
    case Act::Silu:  // s (1 + x (1 - s))
      from_x([](T v) {
        const T s = sigmoid(v);
        return s * (T(1) + v * (T(1) - s));
      });
      break;
    case Act::Mish:  // tanh(sp) + x sech^2(sp) sigmoid(x)
      from_x([](T v) {
        const T t = std::tanh(softplus(v));
        return t + v * (T(1) - t * t) * sigmoid(v);
      });
      break;
    case Act::HardSilu:  // relu6(x + 3) / 6 + x [-3 < x < 3] / 6
      from_x([](T v) {
        return relu6(v + T(3)) / T(6) + (v > T(-3) && v < T(3) ? v / T(6) : T(0));
      });
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
    case Act::LogSoftmax:  // dx_j = dy_j - softmax_j sum_k dy_k
      for_each(rows, n, [&](int64_t r) {
        const T* yr = y + r * cols;
        const T* dyr = dy + r * cols;
        T* dxr = dx + r * cols;
        T sum = 0;
        for (int64_t j = 0; j < cols; ++j) sum += dyr[j];
        for (int64_t j = 0; j < cols; ++j) dxr[j] = dyr[j] - std::exp(yr[j]) * sum;
      });
      break;
  }
}

template void act_forward<float>(Act, const float*, float*, int64_t, int64_t, float);
template void act_forward<double>(Act, const double*, double*, int64_t, int64_t, float);
template void act_backward<float>(Act, const float*, const float*, float*, int64_t, int64_t,
                                  float, const float*);
template void act_backward<double>(Act, const double*, const double*, double*, int64_t,
                                   int64_t, float, const double*);

}  // namespace ember
