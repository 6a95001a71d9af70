// merge_nodes.cpp: the merge layers' nodes (element-wise merges, Concatenate, Dot).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "ember/nodes.h"
#include "ember/parallel.h"
#include "ember/vector_isa.h"

namespace ember {

const char* MergeNode::kind() const {
  switch (op_) {
    case MergeOp::Add: return "Add";
    case MergeOp::Subtract: return "Subtract";
    case MergeOp::Multiply: return "Multiply";
    case MergeOp::Average: return "Average";
    case MergeOp::Maximum: return "Maximum";
    case MergeOp::Minimum: return "Minimum";
  }
  return "Merge";
}

namespace {

#define EMBER_VECTOR_LOOPS "nodes/merge_loops.inc"
#include "ember/vector_variants.inc"

template <class F>
void merge_into(float* y, const float* a, const float* b, int64_t m, F f) {
  EMBER_VECTOR_CALL(merge_into, y, a, b, m, f);
}

// y = x * s for e in [0, m), a copy for s = 1 (y may be x).
void scaled_copy(float* y, const float* x, int64_t m, float s) {
  if (s == 1.f) {
    if (y != x) merge_into(y, x, x, m, [](float v, float) { return v; });
  } else {
    merge_into(y, x, x, m, [s](float v, float) { return v * s; });
  }
}

}  // namespace

// Inputs x[0..k) of m values each; y = their sum, difference (k = 2), product, mean,
// maximum or minimum, element by element, inputs taken in order: input by input over all
// of y (the first two merged, each next one into y).
void MergeNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  const int64_t m = n * out_size, k = static_cast<int64_t>(inputs.size());
  if (k == 1) scaled_copy(y, x[0], m, 1.f);
  for (int64_t i = 1; i < k; ++i) {
    const float* acc = i == 1 ? x[0] : y;
    switch (op_) {
      case MergeOp::Add: case MergeOp::Average:
        if (op_ == MergeOp::Add && act == Act::Relu && i == k - 1)  // moved in (takes_relu)
          merge_into(y, acc, x[i], m, [](float v, float u) {  // relu's own select
            const float s = v + u;
            return s > 0.f ? s : 0.f;
          });
        else
          merge_into(y, acc, x[i], m, [](float v, float u) { return v + u; });
        break;
      case MergeOp::Subtract:
        merge_into(y, acc, x[i], m, [](float v, float u) { return v - u; });
        break;
      case MergeOp::Multiply:
        merge_into(y, acc, x[i], m, [](float v, float u) { return v * u; });
        break;
      case MergeOp::Maximum:
        merge_into(y, acc, x[i], m, [](float v, float u) { return u > v ? u : v; });
        break;
      case MergeOp::Minimum:
        merge_into(y, acc, x[i], m, [](float v, float u) { return u < v ? u : v; });
        break;
    }
  }
  if (op_ == MergeOp::Average) {
    const float kf = static_cast<float>(k);
    merge_into(y, y, y, m, [kf](float v, float) { return v / kf; });
  }
}

// Add: dx_i = dy; Subtract: dx_0 = dy, dx_1 = -dy; Average: dy / k; Multiply:
// dx_i = dy * prod_{j != i} x_j; Maximum/Minimum: dy goes to the first input that
// holds the extreme value, 0 to the others.
void MergeNode::backward(const StepCtx&, const float* const* x, const float* y, float* dy,
                         float* const* dx, int64_t n, bool preact) {
  const int64_t m = n * out_size, k = static_cast<int64_t>(inputs.size());
  const MergeOp op = op_;
  if (act == Act::Relu && !preact && !act_backward_done_by_next) {
    // An Add with a relu moved in: each input's gradient is relu's, dy where y > 0.
    for (int64_t i = 0; i < k; ++i)
      if (dx[i]) merge_into(dx[i], dy, y, m, [](float g, float v) { return v > 0.f ? g : 0.f; });
    return;
  }
  for (int64_t i = 0; i < k; ++i) {
    float* d = dx[i];
    if (!d) continue;
    switch (op) {
      case MergeOp::Add: scaled_copy(d, dy, m, 1.f); break;
      case MergeOp::Subtract: scaled_copy(d, dy, m, i == 1 ? -1.f : 1.f); break;
      case MergeOp::Average: {
        const float kf = static_cast<float>(k);
        merge_into(d, dy, dy, m, [kf](float g, float) { return g / kf; });
        break;
      }
      case MergeOp::Multiply:
        scaled_copy(d, dy, m, 1.f);
        for (int64_t j = 0; j < k; ++j)
          if (j != i) merge_into(d, d, x[j], m, [](float g, float u) { return g * u; });
        break;
      case MergeOp::Maximum: case MergeOp::Minimum:
#pragma omp parallel for schedule(static) if (m * k > (1 << 16))
        for (int64_t e = 0; e < m; ++e) {
          int64_t first = 0;
          while (first < k && x[first][e] != y[e]) ++first;
          d[e] = first == i ? dy[e] : 0.f;
        }
        break;
    }
  }
}

void ConcatenateNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  const int64_t k = static_cast<int64_t>(inputs.size()), rows = n * outer_;
  const int64_t width = out_size / outer_;
#pragma omp parallel for schedule(static) if (n * out_size > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    float* dst = y + r * width;
    for (int64_t i = 0; i < k; ++i) {
      const int64_t c = in_sizes[i] / outer_;
      std::memcpy(dst, x[i] + r * c, sizeof(float) * c);
      dst += c;
    }
  }
}

void ConcatenateNode::backward(const StepCtx&, const float* const*, const float*, float* dy,
                               float* const* dx, int64_t n, bool) {
  const int64_t k = static_cast<int64_t>(inputs.size()), rows = n * outer_;
  const int64_t width = out_size / outer_;
#pragma omp parallel for schedule(static) if (n * out_size > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = dy + r * width;
    for (int64_t i = 0; i < k; ++i) {
      const int64_t c = in_sizes[i] / outer_;
      if (dx[i]) std::memcpy(dx[i] + r * c, src, sizeof(float) * c);
      src += c;
    }
  }
}

// a, b (n, d) -> y (n, 1). normalize: y = <a, b> / (|a| |b|) with |v| =
// sqrt(max(sum v^2, 1e-12)); then da = dy (b^ - y a^) / |a| while sum a^2 > 1e-12
// (the clamp's derivative is 0 below it: da = dy b^ / |a|), and the same for b.
void DotNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  const int64_t d = in_sizes[0];
  const float* a = x[0];
  const float* b = x[1];
#pragma omp parallel for schedule(static) if (n * d > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    double s = 0, sa = 0, sb = 0;
    for (int64_t j = 0; j < d; ++j) {
      s += static_cast<double>(a[i * d + j]) * b[i * d + j];
      sa += static_cast<double>(a[i * d + j]) * a[i * d + j];
      sb += static_cast<double>(b[i * d + j]) * b[i * d + j];
    }
    if (normalize_) s /= std::sqrt(std::max(sa, 1e-12)) * std::sqrt(std::max(sb, 1e-12));
    y[i] = static_cast<float>(s);
  }
}

void DotNode::backward(const StepCtx&, const float* const* x, const float* y, float* dy,
                       float* const* dx, int64_t n, bool) {
  const int64_t d = in_sizes[0];
#pragma omp parallel for schedule(static) if (n * d > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    for (int side = 0; side < 2; ++side) {
      float* out = dx[side];
      if (!out) continue;
      const float* self = x[side] + i * d;
      const float* other = x[1 - side] + i * d;
      if (!normalize_) {
        for (int64_t j = 0; j < d; ++j) out[i * d + j] = dy[i] * other[j];
        continue;
      }
      double ss = 0, so = 0;
      for (int64_t j = 0; j < d; ++j) {
        ss += static_cast<double>(self[j]) * self[j];
        so += static_cast<double>(other[j]) * other[j];
      }
      const double ns = std::sqrt(std::max(ss, 1e-12)), no = std::sqrt(std::max(so, 1e-12));
      const double yi = ss > 1e-12 ? y[i] : 0.0;
      for (int64_t j = 0; j < d; ++j)
        out[i * d + j] =
            static_cast<float>(dy[i] * (other[j] / no - yi * self[j] / ns) / ns);
    }
  }
}

}  // namespace ember
