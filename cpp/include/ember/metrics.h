// metrics.h: per-batch metric sums (the Python side keeps the running means).
#pragma once
#include <cstdint>
#include <string>

namespace ember {

enum class Metric {
  BinaryAccuracy,                 // mean_j [ (out > threshold) == y ]
  CategoricalAccuracy,            // argmax(out) == argmax(y)
  SparseCategoricalAccuracy,      // argmax(out) == label
  TopKCategoricalAccuracy,        // rank of argmax(y) in out <= k
  SparseTopKCategoricalAccuracy,  // rank of label in out <= k
  MeanAbsoluteError,              // mean_j |out - y|
  MeanSquaredError,               // mean_j (out - y)^2
};

// A compiled metric: `weighted` ones (Keras's weighted_metrics) take sample weights;
// plain metrics ignore them, as Keras 3 does.
struct MetricSpec {
  Metric kind = Metric::SparseCategoricalAccuracy;
  int64_t k = 5;
  bool weighted = false;
  float threshold = 0.5f;  // BinaryAccuracy
};

Metric metric_from_string(const std::string& name);
inline bool metric_sparse(Metric m) {
  return m == Metric::SparseCategoricalAccuracy || m == Metric::SparseTopKCategoricalAccuracy;
}

// Sum over the batch of the per-sample metric value (times sw[i] for a weighted
// metric when sw is given).
double metric_sum(const MetricSpec& m, const float* out, const int32_t* labels, const float* y,
                  const float* sw, int64_t n, int64_t c);

}  // namespace ember
