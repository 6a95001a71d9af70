// norm_nodes.cpp: the normalization nodes (BatchNormalization, LayerNormalization,
// GroupNormalization, Normalization).
#include <algorithm>
#include <cmath>

#include "ember/nodes.h"
#include "ember/normalization.h"

namespace ember {

BatchNormNode::BatchNormNode(int64_t c, float eps, float momentum, bool scale, bool center)
    : c_(c), eps_(eps), momentum_(momentum), scale_(scale), center_(center) {
  mean_.resize(c);
  inv_std_.resize(c);
  work_.resize(2 * c);
}

void BatchNormNode::plan(int64_t n) {
  const int64_t steps = this->steps();
  scratch_.resize(batchnorm_scratch(n * (out_size / c_), c_));
  if (steps == 1) return;
  mean_.resize(steps * c_);
  inv_std_.resize(steps * c_);
  xf_.resize(n / steps * out_size);
  yf_.resize(n / steps * out_size);
  dxf_.resize(n / steps * out_size);
  grads_.resize(2 * c_);
}

namespace {

// Rows of frame f of n / frames samples (each of `frames` rows of `size` floats) to or
// from a contiguous block.
void gather_frame(const float* src, float* dst, int64_t n, int64_t frames, int64_t f,
                  int64_t size) {
  for (int64_t i = 0; i < n / frames; ++i)
    std::copy_n(src + (i * frames + f) * size, size, dst + i * size);
}

void scatter_frame(const float* src, float* dst, int64_t n, int64_t frames, int64_t f,
                   int64_t size) {
  for (int64_t i = 0; i < n / frames; ++i)
    std::copy_n(src + i * size, size, dst + (i * frames + f) * size);
}

}  // namespace

void BatchNormNode::forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) {
  const int64_t rows = n * (out_size / c_);
  const float* g = scale_ ? gamma()->var->data() : nullptr;
  const float* b = center_ ? beta()->var->data() : nullptr;
  trained_ = ctx.training;
  if (ctx.training && steps() > 1)
    forward_per_frame(x[0], y, n, ctx.replay);
  else if (ctx.training)
    batchnorm_forward_train(x[0], y, rows, c_, g, b, eps_, momentum_,
                            ctx.replay ? nullptr : moving_mean(),
                            ctx.replay ? nullptr : moving_var(), mean_.data(), inv_std_.data(),
                            scratch_.data());
  else
    batchnorm_forward_infer(x[0], y, rows, c_, g, b, moving_mean(), moving_var(), eps_,
                            work_.data());
  if (act != Act::Linear) act_forward(act, y, y, rows, c_);  // a fused Activation layer
}

void BatchNormNode::forward_per_frame(const float* x, float* y, int64_t n, bool replay) {
  const float* g = scale_ ? gamma()->var->data() : nullptr;
  const float* b = center_ ? beta()->var->data() : nullptr;
  const int64_t steps = this->steps();
  for (int64_t f = 0; f < steps; ++f) {
    gather_frame(x, xf_.data(), n, steps, f, out_size);
    batchnorm_forward_train(xf_.data(), yf_.data(), n / steps * (out_size / c_), c_, g, b,
                            eps_, momentum_, replay ? nullptr : moving_mean(),
                            replay ? nullptr : moving_var(), mean_.data() + f * c_,
                            inv_std_.data() + f * c_, scratch_.data());
    scatter_frame(yf_.data(), y, n, steps, f, out_size);
  }
}

void BatchNormNode::infer_factors(float* scale, float* shift) {
  batchnorm_infer_factors(c_, scale_ ? gamma()->var->data() : nullptr,
                          center_ ? beta()->var->data() : nullptr, moving_mean(), moving_var(),
                          eps_, scale, shift);
}

void BatchNormNode::backward(const StepCtx&, const float* const* x, const float* y, float* dy,
                             float* const* dx, int64_t n, bool preact) {
  const int64_t rows = n * (out_size / c_);
  if (!preact && act != Act::Linear && !act_backward_done_by_next)
    act_backward(act, y, dy, dy, rows, c_);
  const float* g = scale_ ? gamma()->var->data() : nullptr;
  float* dg = scale_ ? gamma()->grad : nullptr;
  float* db = center_ ? beta()->grad : nullptr;
  if (trained_ && steps() > 1)
    backward_per_frame(x[0], dy, dx[0], n);
  else if (trained_)
    batchnorm_backward_train(x[0], dy, dx[0], rows, c_, g, mean_.data(), inv_std_.data(), dg,
                             db, scratch_.data());
  else
    batchnorm_backward_infer(x[0], dy, dx[0], rows, c_, g, moving_mean(), moving_var(), eps_,
                             dg, db, scratch_.data());
}

// The weight gradients are each step's, added in step order.
void BatchNormNode::backward_per_frame(const float* x, float* dy, float* dx, int64_t n) {
  const float* g = scale_ ? gamma()->var->data() : nullptr;
  float* dg = scale_ ? gamma()->grad : nullptr;
  float* db = center_ ? beta()->grad : nullptr;
  const int64_t steps = this->steps();
  for (int64_t f = 0; f < steps; ++f) {
    gather_frame(x, xf_.data(), n, steps, f, out_size);
    gather_frame(dy, yf_.data(), n, steps, f, out_size);
    float* dgf = dg && f ? grads_.data() : dg;
    float* dbf = db && f ? grads_.data() + c_ : db;
    batchnorm_backward_train(xf_.data(), yf_.data(), dx ? dxf_.data() : nullptr,
                             n / steps * (out_size / c_), c_, g, mean_.data() + f * c_,
                             inv_std_.data() + f * c_, dgf, dbf, scratch_.data());
    if (dx) scatter_frame(dxf_.data(), dx, n, steps, f, out_size);
    for (int64_t k = 0; f && k < c_; ++k) {
      if (dg) dg[k] += dgf[k];
      if (db) db[k] += dbf[k];
    }
  }
}

void LayerNormNode::plan(int64_t n) { scratch_.resize(batchnorm_scratch(n * (out_size / c_), c_)); }

void LayerNormNode::forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) {
  const int64_t rows = n * (out_size / c_);
  const float* g = scale_ ? vars[0].var->data() : nullptr;
  const float* b = center_ ? vars[scale_ ? 1 : 0].var->data() : nullptr;
  float* mean = ctx.training ? saved : nullptr;
  layernorm_forward(x[0], y, rows, c_, g, b, eps_, mean, mean ? mean + rows : nullptr);
}

void LayerNormNode::backward(const StepCtx&, const float* const* x, const float*, float* dy,
                             float* const* dx, int64_t n, bool) {
  const int64_t rows = n * (out_size / c_);
  const float* g = scale_ ? vars[0].var->data() : nullptr;
  float* dg = scale_ ? vars[0].grad : nullptr;
  float* db = center_ ? vars[scale_ ? 1 : 0].grad : nullptr;
  layernorm_backward(x[0], dy, dx[0], rows, c_, g, saved, saved + rows, dg, db,
                     scratch_.data());
}

void GroupNormNode::plan(int64_t n) { scratch_.resize(batchnorm_scratch(n * (out_size / c_), c_)); }

void GroupNormNode::forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) {
  const float* g = scale_ ? vars[0].var->data() : nullptr;
  const float* b = center_ ? vars[scale_ ? 1 : 0].var->data() : nullptr;
  float* mean = ctx.training ? saved : nullptr;
  groupnorm_forward(x[0], y, n, out_size / c_, c_, groups_, g, b, eps_, mean,
                    mean ? mean + n * groups_ : nullptr);
}

void GroupNormNode::backward(const StepCtx&, const float* const* x, const float*, float* dy,
                             float* const* dx, int64_t n, bool) {
  const float* g = scale_ ? vars[0].var->data() : nullptr;
  float* dg = scale_ ? vars[0].grad : nullptr;
  float* db = center_ ? vars[scale_ ? 1 : 0].grad : nullptr;
  groupnorm_backward(x[0], dy, dx[0], n, out_size / c_, c_, groups_, g, saved,
                     saved + n * groups_, dg, db, scratch_.data());
}

static inline float normalize_scale(float variance) {
  return std::max(std::sqrt(variance), 1e-7f);
}

void NormalizeNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  const float* mean = vars[0].var->data();
  const float* var = vars[1].var->data();
  const int64_t c = vars[0].var->size(), m = n * out_size;
  const bool invert = invert_;
#pragma omp parallel for schedule(static) if (m > (1 << 16))
  for (int64_t e = 0; e < m; ++e) {
    const int64_t j = e % c;
    const float s = normalize_scale(var[j]);
    y[e] = invert ? mean[j] + x[0][e] * s : (x[0][e] - mean[j]) / s;
  }
}

void NormalizeNode::backward(const StepCtx&, const float* const*, const float*, float* dy,
                             float* const* dx, int64_t n, bool) {
  if (!dx[0]) return;
  const float* var = vars[1].var->data();
  const int64_t c = vars[0].var->size(), m = n * out_size;
  const bool invert = invert_;
#pragma omp parallel for schedule(static) if (m > (1 << 16))
  for (int64_t e = 0; e < m; ++e) {
    const float s = normalize_scale(var[e % c]);
    dx[0][e] = invert ? dy[e] * s : dy[e] / s;
  }
}

}  // namespace ember
