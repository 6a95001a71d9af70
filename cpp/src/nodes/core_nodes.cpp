// core_nodes.cpp: Dense, Activation and Dropout nodes.
#include <cstring>

#include "ember/dense.h"
#include "ember/dropout.h"
#include "ember/nodes.h"

namespace ember {

static const float* bias_of(const Node& node) {
  return node.vars.size() > 1 ? node.vars[1].var->data() : nullptr;
}

void DenseNode::forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) {
  const int64_t r = rows(), k = in_sizes[0] / r, u = out_shape.back();
  dense_forward(x[0], vars[0].var->data(), bias_of(*this), y, n * r, k, u, act, ctx.training);
}

void DenseNode::backward(const StepCtx&, const float* const* x, const float* y, float* dy,
                         float* const* dx, int64_t n, bool preact) {
  const int64_t r = rows(), k = in_sizes[0] / r, u = out_shape.back();
  if (!preact && act != Act::Linear && !act_backward_done_by_next)
    act_backward(act, y, dy, dy, n * r, u);
  dense_backward(x[0], vars[0].var->data(), dy, dx[0], vars[0].grad,
                 vars.size() > 1 ? vars[1].grad : nullptr, n * r, k, u);
}

ChainLayer DenseNode::chain_layer(float* y) const {
  ChainLayer L;
  L.w = vars[0].var->data();
  L.k = in_sizes[0];
  L.n = out_size;
  L.ep.bias = bias_of(*this);
  L.ep.relu = act == Act::Relu;
  L.y = y;
  return L;
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

void DropoutNode::forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) {
  active_ = ctx.training && rate_ > 0.f;
  if (active_)
    dropout_forward(x[0], y, saved, n * out_size, rate_, seed_, ctx.step);
  else
    std::memcpy(y, x[0], sizeof(float) * n * out_size);
}

void DropoutNode::backward(const StepCtx&, const float* const*, const float*, float* dy,
                           float* const* dx, int64_t n, bool) {
  if (!dx[0]) return;
  if (active_)
    dropout_backward(dy, saved, dx[0], n * out_size);
  else
    std::memcpy(dx[0], dy, sizeof(float) * n * out_size);
}

}  // namespace ember
