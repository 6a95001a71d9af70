// metrics.cpp: accuracy metrics as per-batch sums.
#include "ember/metrics.h"

#include <stdexcept>

namespace ember {

Metric metric_from_string(const std::string& name) {
  if (name == "binary_accuracy") return Metric::BinaryAccuracy;
  if (name == "categorical_accuracy") return Metric::CategoricalAccuracy;
  if (name == "sparse_categorical_accuracy") return Metric::SparseCategoricalAccuracy;
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
}  // namespace

double metric_sum(Metric m, const float* out, const int32_t* labels, const float* y,
                  const float* sw, int64_t n, int64_t c) {
  if (metric_sparse(m) ? !labels : !y)
    throw std::invalid_argument("metric: targets of the wrong kind for this metric");
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* o = out + i * c;
    double v = 0;
    switch (m) {
      case Metric::BinaryAccuracy: {
        int64_t hits = 0;
        for (int64_t j = 0; j < c; ++j)
          hits += (o[j] > 0.5f ? 1.f : 0.f) == y[i * c + j];
        v = static_cast<double>(hits) / static_cast<double>(c);
        break;
      }
      case Metric::CategoricalAccuracy:
        v = argmax(o, c) == argmax(y + i * c, c);
        break;
      case Metric::SparseCategoricalAccuracy:
        v = argmax(o, c) == labels[i];
        break;
    }
    total += sw ? v * sw[i] : v;
  }
  return total;
}

}  // namespace ember
