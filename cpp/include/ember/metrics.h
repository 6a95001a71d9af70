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
  MeanAbsolutePercentageError,    // mean_j 100 |y - out| / max(|y|, 1e-7)
  LogCoshError,                   // mean_j log(cosh(out - y))
  CosineSimilarity,               // <y, out> / (|y| |out|), each norm at least 1e-6
  // Sums over the whole pass that a metric's result is computed from (width > 1):
  Confusion,        // 4: tp, fp, tn, fn over every element; y != 0 is positive,
                    //    out > threshold predicts positive (Keras's Precision, Recall, ...)
  Buckets,          // 2k + 2: weight of positives, then of negatives, per Keras bucket
                    //    ceil(clip(out, 0, 1) (k - 1)) - 1 (k = num_thresholds; bucket -1
                    //    joins bucket 0 when threshold > 0, as AUC's thresholds start
                    //    below 0, else is left out), then the total positive and negative
                    //    weights
  ClassConfusion,   // 4c: per class tp, fp, fn, support (Keras's FBetaScore); out > threshold
                    //    predicts, or out >= the row's maximum (at least 1e-7) when the
                    //    threshold is NaN
  ConfusionMatrix,  // k^2: (true class, predicted class) weights; classes are argmaxes of
                    //    rows of several columns, else the values themselves; k classes
  Moments,          // 3c + c: per column sum y, sum y^2, sum (y - out)^2, then sum of weights
};

// A compiled metric: `weighted` ones (Keras's weighted_metrics) take sample weights;
// plain metrics ignore them, as Keras 3 does.
struct MetricSpec {
  Metric kind = Metric::SparseCategoricalAccuracy;
  int64_t k = 5;
  bool weighted = false;
  float threshold = 0.5f;  // BinaryAccuracy; ConfusionMatrix: a true class left out (NaN: none)
};

Metric metric_from_string(const std::string& name);
// Metrics that need integer labels; ConfusionMatrix takes labels or dense targets.
inline bool metric_sparse(Metric m) {
  return m == Metric::SparseCategoricalAccuracy || m == Metric::SparseTopKCategoricalAccuracy;
}
inline bool metric_takes_either(Metric m) { return m == Metric::ConfusionMatrix; }

// How many sums a metric keeps for outputs of c values per sample (1 for the means).
int64_t metric_width(const MetricSpec& m, int64_t c);

// Adds the batch's sums into dst[0, metric_width): for a mean metric the sum over the
// batch of the per-sample value (times sw[i] for a weighted metric when sw is given).
void metric_add(const MetricSpec& m, const float* out, const int32_t* labels, const float* y,
                const float* sw, int64_t n, int64_t c, double* dst);

// metric_add of a metric of width 1, returned.
double metric_sum(const MetricSpec& m, const float* out, const int32_t* labels, const float* y,
                  const float* sw, int64_t n, int64_t c);

}  // namespace ember
