// shape_nodes.cpp: Permute and PReLU (per-element maps with an axis bookkeeping).
#include <algorithm>
#include <cstring>

#include "ember/nodes.h"

namespace ember {
namespace {

// Row-major strides of shape.
std::vector<int64_t> strides_of(const std::vector<int64_t>& shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; --i) s[i] = s[i + 1] * shape[i + 1];
  return s;
}

constexpr int64_t kBlock = 64;  // samples per partial sum of PReLU's alpha gradient

}  // namespace

PermuteNode::PermuteNode(std::vector<int64_t> in_shape, std::vector<int64_t> perm)
    : in_shape_(std::move(in_shape)), perm_(std::move(perm)) {
  const std::vector<int64_t> in_strides = strides_of(in_shape_);
  for (int64_t p : perm_) {
    out_shape_.push_back(in_shape_[p]);
    fwd_strides_.push_back(in_strides[p]);  // out axis i walks in axis perm[i]
  }
  // Backward gathers dx from dy: dx axis perm[i] is dy axis i.
  const std::vector<int64_t> out_strides = strides_of(out_shape_);
  bwd_strides_.assign(perm_.size(), 0);
  for (size_t i = 0; i < perm_.size(); ++i) bwd_strides_[perm_[i]] = out_strides[i];
}

void PermuteNode::gather(const float* src, float* dst, int64_t n,
                         const std::vector<int64_t>& dims,
                         const std::vector<int64_t>& src_strides) const {
  const int64_t per = out_size, rank = static_cast<int64_t>(dims.size());
#pragma omp parallel for schedule(static) if (n * per > (1 << 15))
  for (int64_t b = 0; b < n; ++b) {
    const float* s = src + b * per;
    float* d = dst + b * per;
    for (int64_t i = 0; i < per; ++i) {
      int64_t rest = i, off = 0;
      for (int64_t a = rank - 1; a >= 0; --a) {
        off += (rest % dims[a]) * src_strides[a];
        rest /= dims[a];
      }
      d[i] = s[off];
    }
  }
}

void PermuteNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  gather(x[0], y, n, out_shape_, fwd_strides_);
}

void PermuteNode::backward(const StepCtx&, const float* const*, const float*, float* dy,
                           float* const* dx, int64_t n, bool) {
  if (dx[0]) gather(dy, dx[0], n, in_shape_, bwd_strides_);
}

PReLUNode::PReLUNode(std::vector<int64_t> shape, std::vector<int64_t> alpha_shape)
    : shape_(std::move(shape)) {
  const std::vector<int64_t> st = strides_of(alpha_shape);
  for (size_t a = 0; a < shape_.size(); ++a)
    alpha_strides_.push_back(alpha_shape[a] == 1 && shape_[a] != 1 ? 0 : st[a]);
}

int64_t PReLUNode::alpha_index(int64_t i) const {
  int64_t off = 0;
  for (int64_t a = static_cast<int64_t>(shape_.size()) - 1; a >= 0; --a) {
    off += (i % shape_[a]) * alpha_strides_[a];
    i /= shape_[a];
  }
  return off;
}

void PReLUNode::plan(int64_t n) { partial_.resize(((n + kBlock - 1) / kBlock) * vars[0].var->size()); }

void PReLUNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  const float* alpha = vars[0].var->data();
  const int64_t per = out_size;
#pragma omp parallel for schedule(static) if (n * per > (1 << 15))
  for (int64_t b = 0; b < n; ++b)
    for (int64_t i = 0; i < per; ++i) {
      const float v = x[0][b * per + i];
      y[b * per + i] = v > 0.f ? v : alpha[alpha_index(i)] * v;
    }
}

// dx = dy (x > 0) or alpha dy; dalpha[k] = sum of dy x over the elements with x <= 0
// that map to k, summed in fixed blocks of samples added in order.
void PReLUNode::backward(const StepCtx&, const float* const* x, const float*, float* dy,
                         float* const* dx, int64_t n, bool) {
  const float* alpha = vars[0].var->data();
  const int64_t per = out_size, na = vars[0].var->size();
  if (float* g = vars[0].grad) {
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    float* part = partial_.data();
#pragma omp parallel for schedule(static) if (n * per > (1 << 15))
    for (int64_t blk = 0; blk < blocks; ++blk) {
      float* p = part + blk * na;
      std::fill(p, p + na, 0.f);
      for (int64_t b = blk * kBlock; b < std::min(n, (blk + 1) * kBlock); ++b)
        for (int64_t i = 0; i < per; ++i) {
          const float v = x[0][b * per + i];
          if (!(v > 0.f)) p[alpha_index(i)] += dy[b * per + i] * v;
        }
    }
    std::fill(g, g + na, 0.f);
    for (int64_t blk = 0; blk < blocks; ++blk)
      for (int64_t k = 0; k < na; ++k) g[k] += part[blk * na + k];
  }
  if (!dx[0]) return;
#pragma omp parallel for schedule(static) if (n * per > (1 << 15))
  for (int64_t b = 0; b < n; ++b)
    for (int64_t i = 0; i < per; ++i) {
      const float v = x[0][b * per + i];
      dx[0][b * per + i] = v > 0.f ? dy[b * per + i] : alpha[alpha_index(i)] * dy[b * per + i];
    }
}

void MaskIdsNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  const int64_t steps = out_size, f = in_sizes[0] / steps;
  for (int64_t r = 0; r < n * steps; ++r) {
    const float* row = x[0] + r * f;
    float kept = 0.f;
    for (int64_t j = 0; j < f; ++j) kept = row[j] != value_ ? 1.f : kept;
    y[r] = kept;
  }
}

void MaskApplyNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  const int64_t steps = in_sizes[1], f = out_size / steps;
  for (int64_t r = 0; r < n * steps; ++r)
    for (int64_t j = 0; j < f; ++j) y[r * f + j] = x[1][r] != 0.f ? x[0][r * f + j] : 0.f;
}

void MaskApplyNode::backward(const StepCtx&, const float* const* x, const float*, float* dy,
                             float* const* dx, int64_t n, bool) {
  if (!dx[0]) return;
  const int64_t steps = in_sizes[1], f = out_size / steps;
  for (int64_t r = 0; r < n * steps; ++r)
    for (int64_t j = 0; j < f; ++j) dx[0][r * f + j] = x[1][r] != 0.f ? dy[r * f + j] : 0.f;
}

void RepeatNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  const int64_t f = in_sizes[0], times = out_size / f;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t t = 0; t < times; ++t)
      std::memcpy(y + (b * times + t) * f, x[0] + b * f, sizeof(float) * f);
}

void RepeatNode::backward(const StepCtx&, const float* const*, const float*, float* dy,
                          float* const* dx, int64_t n, bool) {
  if (!dx[0]) return;
  const int64_t f = in_sizes[0], times = out_size / f;
  for (int64_t b = 0; b < n; ++b) {
    float* d = dx[0] + b * f;
    std::memcpy(d, dy + b * times * f, sizeof(float) * f);
    for (int64_t t = 1; t < times; ++t)
      for (int64_t j = 0; j < f; ++j) d[j] += dy[(b * times + t) * f + j];
  }
}

}  // namespace ember
