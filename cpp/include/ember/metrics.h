// metrics.h: per-batch metric sums (the Python side keeps the running means).
#pragma once
#include <cstdint>
#include <string>

namespace ember {

enum class Metric {
  BinaryAccuracy,             // mean_j [ (out > 0.5) == y ]
  CategoricalAccuracy,        // argmax(out) == argmax(y)
  SparseCategoricalAccuracy,  // argmax(out) == label
};

Metric metric_from_string(const std::string& name);
inline bool metric_sparse(Metric m) { return m == Metric::SparseCategoricalAccuracy; }

// Sum over the batch of the per-sample metric value, weighted by sw when given.
double metric_sum(Metric m, const float* out, const int32_t* labels, const float* y,
                  const float* sw, int64_t n, int64_t c);

}  // namespace ember
