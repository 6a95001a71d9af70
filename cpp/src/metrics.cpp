// metrics.cpp: accuracy and error metrics as per-batch sums.
#include "ember/metrics.h"

#include <cmath>
#include <stdexcept>

namespace ember {

Metric metric_from_string(const std::string& name) {
  if (name == "binary_accuracy") return Metric::BinaryAccuracy;
  if (name == "categorical_accuracy") return Metric::CategoricalAccuracy;
  if (name == "sparse_categorical_accuracy") return Metric::SparseCategoricalAccuracy;
  if (name == "top_k_categorical_accuracy") return Metric::TopKCategoricalAccuracy;
  if (name == "sparse_top_k_categorical_accuracy") return Metric::SparseTopKCategoricalAccuracy;
  if (name == "mean_absolute_error") return Metric::MeanAbsoluteError;
  if (name == "mean_squared_error") return Metric::MeanSquaredError;
  throw std::invalid_argument("Unknown metric: '" + name + "'");
}

namespace {
// First index of the maximum, as argmax in numpy and Keras.
inline int64_t argmax(const float* v, int64_t c) {
  int64_t best = 0;
  for (int64_t j = 1; j < c; ++j)
    if (v[j] > v[best]) best = j;
  return best;
}
// Keras's in_top_k: the target is in the top k when fewer than k classes score
// strictly higher (ties count in its favour; a NaN target score never does).
inline bool in_top_k(const float* v, int64_t c, int64_t target, int64_t k) {
  const float t = std::isnan(v[target]) ? -INFINITY : v[target];
  int64_t higher = 0;
  for (int64_t j = 0; j < c; ++j) higher += v[j] > t;
  return higher < k;
}
}  // namespace

double metric_sum(const MetricSpec& spec, const float* out, const int32_t* labels,
                  const float* y, const float* sw, int64_t n, int64_t c) {
  const Metric m = spec.kind;
  if (metric_sparse(m) ? !labels : !y)
    throw std::invalid_argument("metric: targets of the wrong kind for this metric");
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* o = out + i * c;
    const float* t = y ? y + i * c : nullptr;
    double v = 0;
    switch (m) {
      case Metric::BinaryAccuracy: {
        int64_t hits = 0;
        for (int64_t j = 0; j < c; ++j) hits += (o[j] > spec.threshold ? 1.f : 0.f) == t[j];
        v = static_cast<double>(hits) / static_cast<double>(c);
        break;
      }
      case Metric::CategoricalAccuracy: v = argmax(o, c) == argmax(t, c); break;
      case Metric::SparseCategoricalAccuracy: v = argmax(o, c) == labels[i]; break;
      case Metric::TopKCategoricalAccuracy: v = in_top_k(o, c, argmax(t, c), spec.k); break;
      case Metric::SparseTopKCategoricalAccuracy: v = in_top_k(o, c, labels[i], spec.k); break;
      case Metric::MeanAbsoluteError:
        for (int64_t j = 0; j < c; ++j) v += std::fabs(static_cast<double>(o[j]) - t[j]);
        v /= static_cast<double>(c);
        break;
      case Metric::MeanSquaredError:
        for (int64_t j = 0; j < c; ++j) {
          const double d = static_cast<double>(o[j]) - t[j];
          v += d * d;
        }
        v /= static_cast<double>(c);
        break;
    }
    total += (spec.weighted && sw) ? v * sw[i] : v;
  }
  return total;
}

}  // namespace ember
