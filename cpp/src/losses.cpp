// losses.cpp: Keras's losses, each returning its gradient in the same pass.
#include "ember/losses.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace ember {

Loss loss_from_string(const std::string& name) {
  if (name == "sparse_categorical_crossentropy") return Loss::SparseCategoricalCrossentropy;
  if (name == "categorical_crossentropy") return Loss::CategoricalCrossentropy;
  if (name == "binary_crossentropy") return Loss::BinaryCrossentropy;
  if (name == "mean_squared_error" || name == "mse") return Loss::MeanSquaredError;
  if (name == "mean_absolute_error" || name == "mae") return Loss::MeanAbsoluteError;
  if (name == "huber") return Loss::Huber;
  if (name == "hinge") return Loss::Hinge;
  if (name == "kl_divergence" || name == "kld") return Loss::KLDivergence;
  if (name == "mean_squared_logarithmic_error" || name == "msle")
    return Loss::MeanSquaredLogarithmicError;
  if (name == "mean_absolute_percentage_error" || name == "mape")
    return Loss::MeanAbsolutePercentageError;
  if (name == "log_cosh" || name == "logcosh") return Loss::LogCosh;
  if (name == "poisson") return Loss::Poisson;
  if (name == "squared_hinge") return Loss::SquaredHinge;
  if (name == "categorical_hinge") return Loss::CategoricalHinge;
  if (name == "cosine_similarity") return Loss::CosineSimilarity;
  if (name == "dice") return Loss::Dice;
  if (name == "tversky") return Loss::Tversky;
  throw std::invalid_argument("Unknown loss: '" + name + "'");
}

bool loss_fuses(Loss l, bool from_logits, Act act) {
  if (from_logits) return false;
  if (l == Loss::SparseCategoricalCrossentropy || l == Loss::CategoricalCrossentropy)
    return act == Act::Softmax;
  if (l == Loss::BinaryCrossentropy) return act == Act::Sigmoid;
  return false;
}

namespace {

template <class T>
constexpr T kEps = T(1e-7);

template <class T>
inline T clip(T v) {
  const T lo = kEps<T>, hi = T(1) - kEps<T>;
  return v < lo ? lo : (v > hi ? hi : v);
}
// The clip passes gradient only strictly inside [eps, 1 - eps].
template <class T>
inline T inside(T v) {
  return (v > kEps<T> && v < T(1) - kEps<T>) ? T(1) : T(0);
}

template <class T>
T log_sum_exp(const T* z, int64_t c) {
  T mx = z[0];
  for (int64_t j = 1; j < c; ++j) mx = z[j] > mx ? z[j] : mx;
  T s = 0;
  for (int64_t j = 0; j < c; ++j) s += std::exp(z[j] - mx);
  return mx + std::log(s);
}

// Dice and Tversky in one form: L = 1 - a tp / (b tp + cy Sy + cp Sp + eps), whose
// gradient is dL/dp_j = -(a y_j D - N (b y_j + cp)) / D^2 with N = a tp, D the
// denominator. The sums run in double, in order.
template <class T>
T overlap_loss(const T* p, const T* y, T* g, int64_t c, T s, double a, double b, double cy,
               double cp) {
  double tp = 0, sy = 0, sp = 0;
  for (int64_t j = 0; j < c; ++j) {
    tp += double(y[j]) * double(p[j]);
    sy += y[j];
    sp += p[j];
  }
  const double num = a * tp, den = b * tp + cy * sy + cp * sp + double(kEps<float>);
  if (g)
    for (int64_t j = 0; j < c; ++j)
      g[j] = static_cast<T>(-double(s) * (a * y[j] * den - num * (b * y[j] + cp)) /
                            (den * den));
  return static_cast<T>(1.0 - num / den);
}

// One sample: returns L_i and, when g is non-null, writes g = s * dL_i/d(input).
template <class T>
T sample_loss(Loss l, bool from_logits, bool fused, const T* p, int32_t label,
              const T* y, T* g, int64_t c, T s, T param, T param2) {
  switch (l) {
    case Loss::Dice:
      return overlap_loss(p, y, g, c, s, 2.0, 0.0, 1.0, 1.0);
    case Loss::Tversky:  // tp + alpha (Sy - tp) + beta (Sp - tp)
      return overlap_loss(p, y, g, c, s, 1.0, 1.0 - double(param) - double(param2),
                          double(param), double(param2));
    case Loss::SparseCategoricalCrossentropy: {
      if (from_logits) {
        const T lse = log_sum_exp(p, c);
        if (g)
          for (int64_t j = 0; j < c; ++j)
            g[j] = s * (std::exp(p[j] - lse) - (j == label ? T(1) : T(0)));
        return lse - p[label];
      }
      // Keras renormalises q = p / sum(p) and clips q to [eps, 1 - eps].
      T sum = 0;
      for (int64_t j = 0; j < c; ++j) sum += p[j];
      const T qy = p[label] / sum;
      if (g) {
        const T m = inside(qy);
        if (fused)  // through softmax: m (p - onehot)
          for (int64_t j = 0; j < c; ++j) g[j] = s * m * (p[j] - (j == label ? T(1) : T(0)));
        else  // dL/dp_k = -m (delta_yk / q_y - 1) / sum
          for (int64_t j = 0; j < c; ++j)
            g[j] = -s * m * ((j == label ? T(1) / qy : T(0)) - T(1)) / sum;
      }
      return -std::log(clip(qy));
    }
    case Loss::CategoricalCrossentropy: {
      // param keeps 1 - label_smoothing of the target: y (1 - ls) + ls / c.
      const T keep = param, spread = (T(1) - param) / T(c);
      auto Y = [&](int64_t j) { return y[j] * keep + spread; };
      if (from_logits) {
        const T lse = log_sum_exp(p, c);
        T ysum = 0, L = 0;
        for (int64_t j = 0; j < c; ++j) {
          ysum += Y(j);
          L += Y(j) * (lse - p[j]);
        }
        if (g)
          for (int64_t j = 0; j < c; ++j) g[j] = s * (std::exp(p[j] - lse) * ysum - Y(j));
        return L;
      }
      T sum = 0;
      for (int64_t j = 0; j < c; ++j) sum += p[j];
      T L = 0, ym = 0;  // ym = sum_j y_j m_j
      for (int64_t j = 0; j < c; ++j) {
        const T q = p[j] / sum;
        L -= Y(j) * std::log(clip(q));
        ym += Y(j) * inside(q);
      }
      if (g) {
        for (int64_t j = 0; j < c; ++j) {
          const T q = p[j] / sum, m = inside(q);
          // fused through softmax: p_k ym - y_k m_k; else (ym - y_k m_k / q_k) / sum
          g[j] = fused ? s * (p[j] * ym - Y(j) * m)
                       : s * (ym - (m != T(0) ? Y(j) * m / q : T(0))) / sum;
        }
      }
      return L;
    }
    case Loss::BinaryCrossentropy: {
      T L = 0;
      const T inv_c = T(1) / T(c);
      for (int64_t j = 0; j < c; ++j) {
        // param keeps 1 - label_smoothing of the target: y (1 - ls) + ls / 2.
        const T t = y[j] * param + (T(1) - param) / T(2);
        if (from_logits) {
          const T z = p[j];
          L += (z > 0 ? z : T(0)) - z * t + std::log1p(std::exp(-std::fabs(z)));
          if (g) g[j] = s * inv_c * (T(1) / (T(1) + std::exp(-z)) - t);
        } else {
          const T pc = clip(p[j]);
          L -= t * std::log(pc) + (T(1) - t) * std::log(T(1) - pc);
          if (g) {
            const T m = inside(p[j]);
            g[j] = fused ? s * inv_c * m * (p[j] - t)
                         : (m != T(0) ? s * inv_c * (-t / p[j] + (T(1) - t) / (T(1) - p[j]))
                                      : T(0));
          }
        }
      }
      return L * inv_c;
    }
    case Loss::MeanSquaredError: {
      T L = 0;
      const T inv_c = T(1) / T(c);
      for (int64_t j = 0; j < c; ++j) {
        const T d = p[j] - y[j];
        L += d * d;
        if (g) g[j] = s * inv_c * T(2) * d;
      }
      return L * inv_c;
    }
    case Loss::MeanAbsoluteError: {
      T L = 0;
      const T inv_c = T(1) / T(c);
      for (int64_t j = 0; j < c; ++j) {
        const T d = p[j] - y[j];
        L += std::fabs(d);
        if (g) g[j] = s * inv_c * (d > 0 ? T(1) : (d < 0 ? T(-1) : T(0)));
      }
      return L * inv_c;
    }
    case Loss::Huber: {  // 0.5 d^2 where |d| <= delta, else delta |d| - 0.5 delta^2
      T L = 0;
      const T inv_c = T(1) / T(c), delta = param;
      for (int64_t j = 0; j < c; ++j) {
        const T d = p[j] - y[j], a = std::fabs(d);
        L += a <= delta ? T(0.5) * d * d : delta * a - T(0.5) * delta * delta;
        if (g) g[j] = s * inv_c * (a <= delta ? d : (d > 0 ? delta : -delta));
      }
      return L * inv_c;
    }
    case Loss::Hinge: {  // mean_j max(1 - t_j p_j, 0); param != 0: t = 2y - 1
      T L = 0;
      const T inv_c = T(1) / T(c);
      for (int64_t j = 0; j < c; ++j) {
        const T t = param != T(0) ? T(2) * y[j] - T(1) : y[j];
        const T margin = T(1) - t * p[j];
        L += margin > 0 ? margin : T(0);
        if (g) g[j] = margin > 0 ? -s * inv_c * t : T(0);
      }
      return L * inv_c;
    }
    case Loss::KLDivergence: {  // sum_j t_j log(t_j / q_j), t and q clipped to [eps, 1]
      T L = 0;
      for (int64_t j = 0; j < c; ++j) {
        const T t = y[j] < kEps<T> ? kEps<T> : (y[j] > T(1) ? T(1) : y[j]);
        const T q = p[j] < kEps<T> ? kEps<T> : (p[j] > T(1) ? T(1) : p[j]);
        L += t * std::log(t / q);
        if (g) g[j] = (p[j] > kEps<T> && p[j] < T(1)) ? -s * t / p[j] : T(0);
      }
      return L;
    }
    case Loss::MeanSquaredLogarithmicError: {  // max(p, eps) passes no gradient below eps
      T L = 0;
      const T inv_c = T(1) / T(c);
      for (int64_t j = 0; j < c; ++j) {
        const T pc = p[j] > kEps<T> ? p[j] : kEps<T>, yc = y[j] > kEps<T> ? y[j] : kEps<T>;
        const T d = std::log(pc + T(1)) - std::log(yc + T(1));
        L += d * d;
        if (g) g[j] = p[j] > kEps<T> ? s * inv_c * T(2) * d / (pc + T(1)) : T(0);
      }
      return L * inv_c;
    }
    case Loss::MeanAbsolutePercentageError: {
      T L = 0;
      const T inv_c = T(1) / T(c);
      for (int64_t j = 0; j < c; ++j) {
        const T ay = std::fabs(y[j]), den = ay > kEps<T> ? ay : kEps<T>;
        const T d = p[j] - y[j];
        L += std::fabs(d) / den;
        if (g) g[j] = s * inv_c * T(100) * (d > 0 ? T(1) : (d < 0 ? T(-1) : T(0))) / den;
      }
      return T(100) * L * inv_c;
    }
    case Loss::LogCosh: {  // x + softplus(-2x) - log 2, stable for large |x|; d/dx = tanh x
      T L = 0;
      const T inv_c = T(1) / T(c), log2 = std::log(T(2));
      for (int64_t j = 0; j < c; ++j) {
        const T x = p[j] - y[j], z = T(-2) * x;
        const T softplus = (z > 0 ? z : T(0)) + std::log1p(std::exp(-std::fabs(z)));
        L += x + softplus - log2;
        if (g) g[j] = s * inv_c * std::tanh(x);
      }
      return L * inv_c;
    }
    case Loss::Poisson: {
      T L = 0;
      const T inv_c = T(1) / T(c);
      for (int64_t j = 0; j < c; ++j) {
        L += p[j] - y[j] * std::log(p[j] + kEps<T>);
        if (g) g[j] = s * inv_c * (T(1) - y[j] / (p[j] + kEps<T>));
      }
      return L * inv_c;
    }
    case Loss::SquaredHinge: {  // param != 0: t = 2y - 1 (the batch is all 0/1)
      T L = 0;
      const T inv_c = T(1) / T(c);
      for (int64_t j = 0; j < c; ++j) {
        const T t = param != T(0) ? T(2) * y[j] - T(1) : y[j];
        const T margin = T(1) - t * p[j];
        const T m = margin > 0 ? margin : T(0);
        L += m * m;
        if (g) g[j] = -s * inv_c * T(2) * m * t;
      }
      return L * inv_c;
    }
    case Loss::CategoricalHinge: {  // the max's gradient is shared among tied maxima
      T pos = 0, neg = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < c; ++j) {
        pos += y[j] * p[j];
        const T v = (T(1) - y[j]) * p[j];
        neg = v > neg ? v : neg;
      }
      const T margin = neg - pos + T(1);
      if (g) {
        int64_t ties = 0;
        for (int64_t j = 0; j < c; ++j) ties += (T(1) - y[j]) * p[j] == neg;
        for (int64_t j = 0; j < c; ++j) {
          const T at_max = (T(1) - y[j]) * p[j] == neg ? (T(1) - y[j]) / T(ties) : T(0);
          g[j] = margin > 0 ? s * (at_max - y[j]) : T(0);
        }
      }
      return margin > 0 ? margin : T(0);
    }
    case Loss::CosineSimilarity: {
      // L = -sum yn pn with xn = x min(1/|x|, 1/eps). Unclamped, dL/dp = -r (yn - (yn.pn) pn),
      // r = 1/|p|; clamped (|p| < eps), r = 1/eps is a constant: dL/dp = -yn r.
      T sy = 0, sp = 0;
      for (int64_t j = 0; j < c; ++j) {
        sy += y[j] * y[j];
        sp += p[j] * p[j];
      }
      const T inv_eps = T(1) / kEps<T>;
      const T ry0 = T(1) / std::sqrt(sy), rp0 = T(1) / std::sqrt(sp);
      const T ry = ry0 < inv_eps ? ry0 : inv_eps, rp = rp0 < inv_eps ? rp0 : inv_eps;
      T dot = 0;
      for (int64_t j = 0; j < c; ++j) dot += (y[j] * ry) * (p[j] * rp);
      if (g)
        for (int64_t j = 0; j < c; ++j)
          g[j] = rp0 < inv_eps ? -s * rp * (y[j] * ry - dot * p[j] * rp) : -s * y[j] * ry * rp;
      return -dot;
    }
  }
  return T(0);
}

template <class T>
double run(Loss l, bool from_logits, Act act, const T* out, const int32_t* labels,
           const T* y, const T* sw, T* grad, int64_t n, int64_t c, T scale, T param,
           T param2, T* per_sample = nullptr) {
  if (n < 0 || c < 1) throw std::invalid_argument("loss: bad shape");
  const bool sparse = loss_sparse(l);
  if (sparse) {
    if (!labels) throw std::invalid_argument("loss: sparse loss needs integer labels");
    for (int64_t i = 0; i < n; ++i)
      if (labels[i] < 0 || labels[i] >= c)
        throw std::invalid_argument(
            "Received a label value of " + std::to_string(labels[i]) +
            " which is outside the valid range of [0, " + std::to_string(c) +
            ") for the " + std::to_string(c) + "-class output (sample " +
            std::to_string(i) + ")");
  } else if (!y) {
    throw std::invalid_argument("loss: this loss needs float targets");
  }
  const bool fused = loss_fuses(l, from_logits, act);
  if (l == Loss::Huber && !(param > T(0)))
    throw std::invalid_argument("Huber: delta must be positive");
  if (l == Loss::Hinge || l == Loss::SquaredHinge) {
    // Keras converts 0/1 targets only when the whole batch is 0/1
    param = T(1);
    for (int64_t i = 0; i < n * c && param != T(0); ++i)
      if (y[i] != T(0) && y[i] != T(1)) param = T(0);
  }
  // Rows are independent; the weighted sum is taken afterwards in row order so the
  // value does not depend on the thread count.
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T w = sw ? sw[i] : T(1);
    const T L = sample_loss<T>(l, from_logits, fused, out + i * c, sparse ? labels[i] : 0,
                               sparse ? nullptr : y + i * c, grad ? grad + i * c : nullptr,
                               c, scale * w, param, param2);
    if (per_sample) per_sample[i] = L;
    total += static_cast<double>(w) * static_cast<double>(L);
  }
  return total;
}

}  // namespace

template <class T>
double loss_forward_backward(Loss l, bool from_logits, Act act, const T* out,
                             const int32_t* labels, const T* y, const T* sw, T* grad,
                             int64_t n, int64_t c, T scale, T param, T param2) {
  return run<T>(l, from_logits, act, out, labels, y, sw, grad, n, c, scale, param, param2);
}

template <class T>
double loss_forward(Loss l, bool from_logits, const T* out, const int32_t* labels,
                    const T* y, const T* sw, int64_t n, int64_t c, T param, T* per_sample,
                    T param2) {
  return run<T>(l, from_logits, Act::Linear, out, labels, y, sw, nullptr, n, c, T(1), param,
                param2, per_sample);
}

template double loss_forward_backward<float>(Loss, bool, Act, const float*, const int32_t*,
                                             const float*, const float*, float*, int64_t,
                                             int64_t, float, float, float);
template double loss_forward_backward<double>(Loss, bool, Act, const double*,
                                              const int32_t*, const double*, const double*,
                                              double*, int64_t, int64_t, double, double,
                                              double);
template double loss_forward<float>(Loss, bool, const float*, const int32_t*, const float*,
                                    const float*, int64_t, int64_t, float, float*, float);
template double loss_forward<double>(Loss, bool, const double*, const int32_t*,
                                     const double*, const double*, int64_t, int64_t,
                                     double, double*, double);

}  // namespace ember
