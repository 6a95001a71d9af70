// conv_nodes.cpp: Conv2D, 2-D pooling and global pooling nodes.
#include <cstring>
#include "ember/nodes.h"

namespace ember {

// A layer's geometry (stored for one sample) with the batch size of this call.
template <class Shape>
static Shape with_batch(Shape s, int64_t n) {
  s.n = n;
  return s;
}

// y (rows, f) += the node's bias (its second variable, when it has one), then its
// activation: the epilogue of the nodes whose product does not fuse them.
static void bias_and_activation(const Node& node, float* y, int64_t rows, int64_t f) {
  if (node.vars.size() > 1) {
    const float* b = node.vars[1].var->data();
#pragma omp parallel for schedule(static) if (rows * f > (1 << 15))
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < f; ++j) y[r * f + j] += b[j];
  }
  if (node.act != Act::Linear) act_forward(node.act, y, y, rows, f);
}

// packed[r, :] = src[r * stride + offset, :width], `rows` rows (one group's columns).
static void pack_columns(const float* src, int64_t rows, int64_t width, int64_t stride,
                         int64_t offset, float* packed) {
#pragma omp parallel for schedule(static) if (rows * width > (1 << 15))
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(packed + r * width, src + r * stride + offset, sizeof(float) * width);
}

// The reverse: dst[r * stride + offset, :width] = packed[r, :].
static void unpack_columns(const float* packed, int64_t rows, int64_t width, int64_t stride,
                           int64_t offset, float* dst) {
#pragma omp parallel for schedule(static) if (rows * width > (1 << 15))
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(dst + r * stride + offset, packed + r * width, sizeof(float) * width);
}

void Conv2DNode::plan(int64_t n) {
  if (groups_ == 1) return;
  const Conv2DShape& s = shape_;
  xg_.resize(n * s.h * s.w * s.c);
  yg_.resize(n * s.oh * s.ow * s.f);
  wg_.resize(s.k() * s.f);
  dxg_.resize(n * s.h * s.w * s.c);
  dwg_.resize(s.k() * s.f);
}

bool Conv2DNode::plan_inference(int64_t n) {
  if (groups_ == 1) return false;
  const Conv2DShape& s = shape_;
  const bool grew = xg_.size() < n * s.h * s.w * s.c || yg_.size() < n * s.oh * s.ow * s.f;
  xg_.resize(n * s.h * s.w * s.c);
  yg_.resize(n * s.oh * s.ow * s.f);
  wg_.resize(s.k() * s.f);
  return grew;
}

void Conv2DNode::forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) {
  const float* b = vars.size() > 1 ? vars[1].var->data() : nullptr;
  const Conv2DShape s = with_batch(shape_, n);
  if (folded_bn && ctx.inference_plan) {  // this node's act is Linear: the BN's follows
    bn_factors_.resize(2 * s.f);
    folded_bn->infer_factors(bn_factors_.data(), bn_factors_.data() + s.f);
    conv2d_forward(s, x[0], vars[0].var->data(), b, y, folded_bn->act, bn_factors_.data(),
                   bn_factors_.data() + s.f);
    return;
  }
  if (groups_ == 1) {
    conv2d_forward(s, x[0], vars[0].var->data(), b, y, act);
    return;
  }
  const int64_t C = s.c * groups_, F = s.f * groups_;
  const float* w = vars[0].var->data();
  for (int64_t g = 0; g < groups_; ++g) {
    pack_columns(w, s.k(), s.f, F, g * s.f, wg_.data());
    pack_columns(x[0], n * s.h * s.w, s.c, C, g * s.c, xg_.data());
    conv2d_forward(s, xg_.data(), wg_.data(), b ? b + g * s.f : nullptr, yg_.data(), act);
    unpack_columns(yg_.data(), n * s.oh * s.ow, s.f, F, g * s.f, y);
  }
}

void Conv2DNode::backward(const StepCtx&, const float* const* x, const float* y, float* dy,
                          float* const* dx, int64_t n, bool preact) {
  const int64_t F = shape_.f * groups_;
  if (!preact && act != Act::Linear && !act_backward_done_by_next)
    act_backward(act, y, dy, dy, n * out_size / F, F);
  const Conv2DShape s = with_batch(shape_, n);
  float* dw = vars[0].grad;
  float* db = vars.size() > 1 ? vars[1].grad : nullptr;
  if (groups_ == 1) {
    conv2d_backward(s, x[0], vars[0].var->data(), dy, dx[0], dw, db);
    return;
  }
  const int64_t C = s.c * groups_;
  const float* w = vars[0].var->data();
  for (int64_t g = 0; g < groups_; ++g) {
    pack_columns(w, s.k(), s.f, F, g * s.f, wg_.data());
    pack_columns(x[0], n * s.h * s.w, s.c, C, g * s.c, xg_.data());
    pack_columns(dy, n * s.oh * s.ow, s.f, F, g * s.f, yg_.data());
    conv2d_backward(s, xg_.data(), wg_.data(), yg_.data(), dx[0] ? dxg_.data() : nullptr,
                    dw ? dwg_.data() : nullptr, db ? db + g * s.f : nullptr);
    if (dw) unpack_columns(dwg_.data(), s.k(), s.f, F, g * s.f, dw);
    if (dx[0]) unpack_columns(dxg_.data(), n * s.h * s.w, s.c, C, g * s.c, dx[0]);
  }
}

void Conv2DTransposeNode::forward(const StepCtx&, const float* const* x, float* y,
                                  int64_t n) {
  const Conv2DShape s = with_batch(shape_, n);
  conv2d_backward(s, nullptr, vars[0].var->data(), x[0], y, nullptr, nullptr);
  const int64_t rows = n * s.h * s.w;
  bias_and_activation(*this, y, rows, s.c);
}

// x (n, oh, ow, channels) is the convolution's output, dy (n, h, w, filters) its input:
// dx = conv(dy, kernel); dkernel = the convolution's weight gradient for input dy and
// output gradient x; dbias = column sums of dy.
void Conv2DTransposeNode::backward(const StepCtx&, const float* const* x, const float* y,
                                   float* dy, float* const* dx, int64_t n, bool preact) {
  const Conv2DShape s = with_batch(shape_, n);
  const int64_t rows = n * s.h * s.w;
  if (!preact && act != Act::Linear && !act_backward_done_by_next)
    act_backward(act, y, dy, dy, rows, s.c);
  if (vars.size() > 1 && vars[1].grad) bias_grad(dy, rows, s.c, vars[1].grad);
  if (vars[0].grad)
    conv2d_backward(s, dy, vars[0].var->data(), x[0], nullptr, vars[0].grad, nullptr);
  if (dx[0]) conv2d_forward(s, dy, vars[0].var->data(), nullptr, dx[0], Act::Linear);
}

void DepthwiseNode::plan(int64_t n) { scratch_.resize(depthwise_scratch(with_batch(shape_, n))); }

void DepthwiseNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  const Conv2DShape s = with_batch(shape_, n);
  depthwise_forward(s, x[0], vars[0].var->data(), y);
  bias_and_activation(*this, y, n * s.oh * s.ow, s.f);
}

void DepthwiseNode::backward(const StepCtx&, const float* const* x, const float* y, float* dy,
                             float* const* dx, int64_t n, bool preact) {
  const Conv2DShape s = with_batch(shape_, n);
  const int64_t rows = n * s.oh * s.ow;
  if (!preact && act != Act::Linear && !act_backward_done_by_next)
    act_backward(act, y, dy, dy, rows, s.f);
  if (vars.size() > 1 && vars[1].grad) bias_grad(dy, rows, s.f, vars[1].grad);
  depthwise_backward(s, x[0], vars[0].var->data(), dy, dx[0], vars[0].grad, scratch_.data());
}

void Pool2DNode::forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) {
  if (max_)
    maxpool2d_forward(with_batch(shape_, n), x[0], y, ctx.training ? argmax() : nullptr);
  else
    avgpool2d_forward(with_batch(shape_, n), x[0], y);
}

void Pool2DNode::backward(const StepCtx&, const float* const*, const float* y, float* dy,
                          float* const* dx, int64_t n, bool) {
  if (!dx[0]) return;
  if (max_)
    maxpool2d_backward(with_batch(shape_, n), dy, argmax(), dx[0],
                       relu_backward_of_prev ? y : nullptr);
  else
    avgpool2d_backward(with_batch(shape_, n), dy, dx[0]);
}

void GlobalPoolNode::forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) {
  const int64_t hw = in_sizes[0] / out_size, c = out_size;
  const float* ids = inputs.size() > 1 ? x[1] : nullptr;
  if (max_)
    global_maxpool_forward(x[0], y, ctx.training ? argmax() : nullptr, n, hw, c, ids);
  else
    global_avgpool_forward(x[0], y, n, hw, c, ids);
}

void GlobalPoolNode::backward(const StepCtx&, const float* const* x, const float* y,
                              float* dy, float* const* dx, int64_t n, bool) {
  if (!dx[0]) return;
  const int64_t hw = in_sizes[0] / out_size, c = out_size;
  if (max_)
    global_maxpool_backward(dy, argmax(), dx[0], n, hw, c, relu_backward_of_prev ? y : nullptr);
  else
    global_avgpool_backward(dy, dx[0], n, hw, c, inputs.size() > 1 ? x[1] : nullptr);
}

}  // namespace ember
