// metrics.cpp: accuracy and error metrics as per-batch sums.
#include "ember/metrics.h"

#include <cmath>
#include <stdexcept>

#include "ember/buffer.h"
#include "ember/vector_isa.h"

namespace ember {

Metric metric_from_string(const std::string& name) {
  if (name == "binary_accuracy") return Metric::BinaryAccuracy;
  if (name == "categorical_accuracy") return Metric::CategoricalAccuracy;
  if (name == "sparse_categorical_accuracy") return Metric::SparseCategoricalAccuracy;
  if (name == "top_k_categorical_accuracy") return Metric::TopKCategoricalAccuracy;
  if (name == "sparse_top_k_categorical_accuracy") return Metric::SparseTopKCategoricalAccuracy;
  if (name == "mean_absolute_error") return Metric::MeanAbsoluteError;
  if (name == "mean_squared_error") return Metric::MeanSquaredError;
  if (name == "mean_absolute_percentage_error") return Metric::MeanAbsolutePercentageError;
  if (name == "log_cosh_error") return Metric::LogCoshError;
  if (name == "cosine_similarity") return Metric::CosineSimilarity;
  if (name == "confusion") return Metric::Confusion;
  if (name == "buckets") return Metric::Buckets;
  if (name == "class_confusion") return Metric::ClassConfusion;
  if (name == "confusion_matrix") return Metric::ConfusionMatrix;
  if (name == "moments") return Metric::Moments;
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

int64_t metric_width(const MetricSpec& m, int64_t c) {
  switch (m.kind) {
    case Metric::Confusion: return 4;
    case Metric::Buckets: return 2 * m.k + 2;
    case Metric::ClassConfusion: return 4 * c;
    case Metric::ConfusionMatrix: return m.k * m.k;
    case Metric::Moments: return 4 * c;
    default: return 1;
  }
}

namespace {
// The class a row names: the argmax of several columns, else the value itself.
int64_t class_of(const float* v, int64_t c, int64_t classes, const char* what) {
  const double x = c > 1 ? static_cast<double>(argmax(v, c)) : static_cast<double>(v[0]);
  if (!(x >= 0 && x < static_cast<double>(classes)) || x != std::floor(x))
    throw std::invalid_argument(std::string("MeanIoU: ") + what + " class " +
                                std::to_string(x) + " outside [0, " + std::to_string(classes) +
                                ")");
  return static_cast<int64_t>(x);
}

#define EMBER_VECTOR_LOOPS "metrics_loops.inc"
#include "ember/vector_variants.inc"

}  // namespace

void metric_add(const MetricSpec& spec, const float* out, const int32_t* labels,
                const float* y, const float* sw, int64_t n, int64_t c, double* dst) {
  const Metric m = spec.kind;
  const bool targets_ok = metric_takes_either(m) ? (labels || y)
                                                 : (metric_sparse(m) ? labels != nullptr
                                                                     : y != nullptr);
  if (!targets_ok)
    throw std::invalid_argument("metric: targets of the wrong kind for this metric");
  if ((m == Metric::Buckets || m == Metric::ConfusionMatrix) && spec.k < 1)
    throw std::invalid_argument("metric: k must be >= 1");
  const int64_t T = spec.k;
  if (metric_width(spec, c) == 1 && m != Metric::ConfusionMatrix) {
    // One value per row (an accuracy, an error): the rows over the threads, then their
    // weighted sum in row order, whatever the thread count.
    static thread_local AlignedBuffer<double> values;
    values.resize(n);
    EMBER_VECTOR_CALL(row_values, spec, out, labels, y, n, c, values.data());
    for (int64_t i = 0; i < n; ++i)
      dst[0] += ((spec.weighted && sw) ? static_cast<double>(sw[i]) : 1.0) * values[i];
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float* o = out + i * c;
    const float* t = y ? y + i * c : nullptr;
    const double w = (spec.weighted && sw) ? static_cast<double>(sw[i]) : 1.0;
    switch (m) {
      case Metric::Confusion:
        for (int64_t j = 0; j < c; ++j) {
          const bool pos = t[j] != 0.f, pred = o[j] > spec.threshold;
          dst[pos ? (pred ? 0 : 3) : (pred ? 1 : 2)] += w;
        }
        break;
      case Metric::Buckets:
        for (int64_t j = 0; j < c; ++j) {
          const bool pos = t[j] != 0.f;
          dst[2 * T + (pos ? 0 : 1)] += w;
          const float p = std::min(std::max(o[j], 0.f), 1.f);
          const float b = std::ceil(p * static_cast<float>(T - 1)) - 1.f;
          // Bucket -1 (a prediction of 0 exactly) joins bucket 0 when the thresholds
          // start below 0 (threshold > 0), else it lies under every threshold.
          if (!(b >= 0.f) && !(spec.threshold > 0.f)) continue;
          const int64_t k = b > 0.f ? std::min(static_cast<int64_t>(b), T - 1) : 0;
          dst[(pos ? 0 : T) + k] += w;
        }
        break;
      case Metric::ClassConfusion: {
        float top = -INFINITY;
        if (std::isnan(spec.threshold)) {
          for (int64_t j = 0; j < c; ++j) top = std::max(top, o[j]);
          top = std::max(top, 1e-7f);
        }
        for (int64_t j = 0; j < c; ++j) {
          const double pred = std::isnan(spec.threshold) ? (o[j] >= top) : (o[j] > spec.threshold);
          const double truth = t[j];
          dst[4 * j] += w * pred * truth;
          dst[4 * j + 1] += w * pred * (1.0 - truth);
          dst[4 * j + 2] += w * (1.0 - pred) * truth;
          dst[4 * j + 3] += w * truth;
        }
        break;
      }
      case Metric::ConfusionMatrix: {  // Keras's ignore_class: that true class is left out
        int64_t tc;
        const bool ignoring = spec.threshold == spec.threshold;  // not NaN
        if (labels) {
          if (ignoring && labels[i] == static_cast<int64_t>(spec.threshold)) break;
          if (labels[i] < 0 || labels[i] >= T)
            throw std::invalid_argument("MeanIoU: true class " + std::to_string(labels[i]) +
                                        " outside [0, " + std::to_string(T) + ")");
          tc = labels[i];
        } else {
          if (ignoring && c == 1 && t[0] == spec.threshold) break;
          tc = class_of(t, c, T, "true");
          if (ignoring && tc == static_cast<int64_t>(spec.threshold)) break;
        }
        dst[tc * T + class_of(o, c, T, "predicted")] += w;
        break;
      }
      case Metric::Moments:
        for (int64_t j = 0; j < c; ++j) {
          const double yt = t[j], d = yt - o[j];
          dst[j] += w * yt;
          dst[c + j] += w * yt * yt;
          dst[2 * c + j] += w * d * d;
          dst[3 * c + j] += w;
        }
        break;
      default:
        break;  // (one value per row: above)
    }
  }
}

double metric_sum(const MetricSpec& spec, const float* out, const int32_t* labels,
                  const float* y, const float* sw, int64_t n, int64_t c) {
  if (metric_width(spec, c) != 1)
    throw std::invalid_argument("metric_sum: this metric keeps several sums");
  double total = 0;
  metric_add(spec, out, labels, y, sw, n, c, &total);
  return total;
}

}  // namespace ember
