// losses.cpp: Keras's losses, each returning its gradient in the same pass.
#include "ember/losses.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "ember/buffer.h"
#include "ember/vector_isa.h"
#include "vector_math.h"

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
// The clip passes gradient only strictly inside [eps, 1 - eps] (no branch: the loops
// that call it vectorize).
template <class T>
inline T inside(T v) {
  return (v > kEps<T>) & (v < T(1) - kEps<T>) ? T(1) : T(0);
}

#define EMBER_VECTOR_LOOPS "losses_loops.inc"
#include "ember/vector_variants.inc"

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
  // Rows are independent: over the threads when there are enough elements, each row's
  // loss kept, then the weighted sum taken in row order, so the value does not depend
  // on the thread count.
  static thread_local AlignedBuffer<T> row_loss;
  T* L = per_sample;
  if (!L) {
    row_loss.resize(n);
    L = row_loss.data();
  }
  EMBER_VECTOR_CALL(loss_rows<T>, l, from_logits, fused, out, labels, y, sw, grad, n, c, scale,
                    param, param2, L);
  double total = 0;
  for (int64_t i = 0; i < n; ++i)
    total += static_cast<double>(sw ? sw[i] : T(1)) * static_cast<double>(L[i]);
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
