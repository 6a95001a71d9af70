// core_nodes.cpp: Dense, Activation and Dropout nodes.
#include <cmath>
#include <cstring>

#include "ember/dense.h"
#include "ember/dropout.h"
#include "ember/random.h"
#include "ember/nodes.h"

namespace ember {

static const float* bias_of(const Node& node) {
  return node.vars.size() > 1 ? node.vars[1].var->data() : nullptr;
}

void DenseNode::forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) {
  const int64_t r = rows(), k = in_sizes[0] / r, u = out_shape.back();
  if (folded_bn && ctx.inference_plan) {  // this node's act is Linear: the BN's follows
    const Epilogue ep = inference_epilogue();
    sgemm(Trans::N, Trans::N, n * r, u, k, 1.f, x[0], k, vars[0].var->data(), u, 0.f, y, u,
          &ep);
    return;
  }
  dense_forward(x[0], vars[0].var->data(), bias_of(*this), y, n * r, k, u, act, ctx.training);
}

Epilogue DenseNode::inference_epilogue() {
  Epilogue ep;
  ep.bias = bias_of(*this);
  ep.relu = inference_act() == Act::Relu;
  if (folded_bn) {
    const int64_t u = out_shape.back();
    bn_factors_.resize(2 * u);
    folded_bn->infer_factors(bn_factors_.data(), bn_factors_.data() + u);
    ep.scale = bn_factors_.data();
    ep.shift = bn_factors_.data() + u;
  }
  return ep;
}

Act DenseNode::inference_act() const { return folded_bn ? folded_bn->act : act; }

void DenseNode::backward(const StepCtx&, const float* const* x, const float* y, float* dy,
                         float* const* dx, int64_t n, bool preact) {
  const int64_t r = rows(), k = in_sizes[0] / r, u = out_shape.back();
  if (!preact && act != Act::Linear && !act_backward_done_by_next)
    act_backward(act, y, dy, dy, n * r, u);
  dense_backward(x[0], vars[0].var->data(), dy, dx[0], vars[0].grad,
                 vars.size() > 1 ? vars[1].grad : nullptr, n * r, k, u);
}

ChainLayer DenseNode::chain_layer(float* y) {
  ChainLayer L;
  L.w = vars[0].var->data();
  L.k = in_sizes[0];
  L.n = out_size;
  L.ep = inference_epilogue();
  L.y = y;
  return L;
}

void RandomNode::forward(const StepCtx& ctx, const float* const*, float* y, int64_t n) {
  if (advance_ && !ctx.replay) ++calls_;
  if (normal_)
    fill_normal(y, n * out_size, a_, b_, seed_, stream_ + calls_, false);
  else
    fill_uniform(y, n * out_size, a_, b_, seed_, stream_ + calls_);
}

void ModeSelectNode::forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) {
  trained_ = ctx.training;
  std::memcpy(y, x[trained_ ? 0 : 1], sizeof(float) * n * out_size);
}

void ModeSelectNode::backward(const StepCtx&, const float* const*, const float*, float* dy,
                              float* const* dx, int64_t n, bool) {
  for (int j = 0; j < 2; ++j) {
    if (!dx[j]) continue;
    if ((j == 0) == trained_)
      std::memcpy(dx[j], dy, sizeof(float) * n * out_size);
    else
      std::memset(dx[j], 0, sizeof(float) * n * out_size);
  }
}

void ActivationNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  const int64_t u = out_shape.back();
  act_forward(act, x[0], y, n * (out_size / u), u, alpha);
}

void ActivationNode::backward(const StepCtx&, const float* const* x, const float* y, float* dy,
                              float* const* dx, int64_t n, bool preact) {
  if (!dx[0]) return;
  const int64_t u = out_shape.back();
  if (preact || act_backward_done_by_next)
    std::memcpy(dx[0], dy, sizeof(float) * n * out_size);
  else
    act_backward(act, y, dy, dx[0], n * (out_size / u), u, alpha, x[0]);
}

const char* DropoutNode::kind() const {
  switch (kind_) {
    case NoiseKind::Dropout: return "Dropout";
    case NoiseKind::Spatial: return "SpatialDropout";
    case NoiseKind::GaussianDropout: return "GaussianDropout";
    case NoiseKind::GaussianNoise: return "GaussianNoise";
  }
  return "Noise";
}

void DropoutNode::plan(int64_t n) {
  if (kind_ == NoiseKind::Spatial) per_channel_.resize(n * channels_);
}

void DropoutNode::forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) {
  active_ = ctx.training && rate_ > 0.f;
  const int64_t m = n * out_size;
  if (!active_) {
    std::memcpy(y, x[0], sizeof(float) * m);
    return;
  }
  switch (kind_) {
    case NoiseKind::Dropout:
      dropout_forward(x[0], y, saved, m, rate_, seed_, ctx.step);
      break;
    case NoiseKind::Spatial: {
      const int64_t c = channels_, per = out_size;
      const float scale = 1.f / (1.f - rate_), rate = rate_;
      float* keep = per_channel_.data();
      fill_uniform(keep, n * c, 0.f, 1.f, seed_, ctx.step);
#pragma omp parallel for schedule(static) if (m > (1 << 15))
      for (int64_t i = 0; i < m; ++i) {
        const float k = keep[(i / per) * c + i % c] >= rate ? scale : 0.f;
        saved[i] = k;
        y[i] = x[0][i] * k;
      }
      break;
    }
    case NoiseKind::GaussianDropout:
      fill_normal(saved, m, 1.f, std::sqrt(rate_ / (1.f - rate_)), seed_, ctx.step, false);
#pragma omp parallel for schedule(static) if (m > (1 << 15))
      for (int64_t i = 0; i < m; ++i) y[i] = x[0][i] * saved[i];
      break;
    case NoiseKind::GaussianNoise:
      fill_normal(y, m, 0.f, rate_, seed_, ctx.step, false);
#pragma omp parallel for schedule(static) if (m > (1 << 15))
      for (int64_t i = 0; i < m; ++i) y[i] += x[0][i];
      break;
  }
}

void DropoutNode::backward(const StepCtx&, const float* const*, const float*, float* dy,
                           float* const* dx, int64_t n, bool) {
  if (!dx[0]) return;
  if (active_ && kind_ != NoiseKind::GaussianNoise)
    dropout_backward(dy, saved, dx[0], n * out_size);
  else
    std::memcpy(dx[0], dy, sizeof(float) * n * out_size);
}

void ActivityPenaltyNode::forward(const StepCtx&, const float* const* x, float* y,
                                  int64_t n) {
  const int64_t per = out_size;
  std::memcpy(y, x[0], sizeof(float) * n * per);
  // One partial per sample (each summed in order), then the samples in order.
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    const float* v = x[0] + i * per;
    for (int64_t e = 0; e < per; ++e)
      s += l1_ * std::fabs(static_cast<double>(v[e])) +
           l2_ * static_cast<double>(v[e]) * v[e];
    total += s;
  }
  penalty_ = total;
}

void ActivityPenaltyNode::backward(const StepCtx&, const float* const* x, const float*,
                                   float* dy, float* const* dx, int64_t n, bool) {
  if (!dx[0]) return;
  const int64_t m = n * out_size;
  // Keras divides the penalty by the batch size (inside TimeDistributed, each step's
  // by the batch's).
  const float batch = static_cast<float>(n / steps());
  const float l1 = l1_ / batch, l2 = 2.f * l2_ / batch;
#pragma omp parallel for schedule(static) if (m > (1 << 16))
  for (int64_t e = 0; e < m; ++e) {
    const float v = x[0][e];
    dx[0][e] = dy[e] + l1 * static_cast<float>((v > 0.f) - (v < 0.f)) + l2 * v;
  }
}

}  // namespace ember
