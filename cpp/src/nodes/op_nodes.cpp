// op_nodes.cpp: the nodes of ember.ops, which traced custom layers lower to: element-wise
// unary and binary ops with broadcasting, reductions, index gathers and batched matrix
// products. Every loop splits over samples (or over a fixed partition of them), so the
// bits do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "ember/nodes.h"

namespace ember {
namespace {

constexpr int64_t kBlock = 64;       // samples per partial sum of a variable's gradient
constexpr int64_t kParallel = 1 << 15;  // elements below which a loop stays serial

inline int64_t at(const std::vector<int32_t>& map, int64_t e) {
  return map.empty() ? e : map[e];
}

}  // namespace

// ---- UnaryNode -------------------------------------------------------------------------

void UnaryNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  const int64_t m = n * out_size;
  const float a = a_, b = b_;
  const UnaryOp op = op_;
  const float* in = x[0];
#pragma omp parallel for schedule(static) if (m > kParallel)
  for (int64_t e = 0; e < m; ++e) {
    const float v = in[e];
    float r = 0.f;
    switch (op) {
      case UnaryOp::Affine: r = a * v + b; break;
      case UnaryOp::Exp: r = std::exp(v); break;
      case UnaryOp::Log: r = std::log(v); break;
      case UnaryOp::Sqrt: r = std::sqrt(v); break;
      case UnaryOp::Square: r = v * v; break;
      case UnaryOp::Abs: r = std::fabs(v); break;
      case UnaryOp::Sign: r = static_cast<float>((v > 0.f) - (v < 0.f)); break;
      case UnaryOp::Clip: r = std::min(std::max(v, a), b); break;
      case UnaryOp::Pow: r = std::pow(v, a); break;
      case UnaryOp::RDiv: r = a / v; break;
      case UnaryOp::Floor: r = std::floor(v); break;
      case UnaryOp::Round: r = std::nearbyint(v); break;  // half to even, as NumPy
      case UnaryOp::Trunc: r = std::trunc(v); break;
      case UnaryOp::Log1p: r = std::log1p(v); break;
      case UnaryOp::Expm1: r = std::expm1(v); break;
      case UnaryOp::Sin: r = std::sin(v); break;
      case UnaryOp::Cos: r = std::cos(v); break;
    }
    y[e] = r;
  }
}

void UnaryNode::backward(const StepCtx&, const float* const* x, const float* y, float* dy,
                         float* const* dx, int64_t n, bool) {
  if (!dx[0]) return;
  const int64_t m = n * out_size;
  const float a = a_, b = b_;
  const UnaryOp op = op_;
  const float* in = x[0];
  float* out = dx[0];
#pragma omp parallel for schedule(static) if (m > kParallel)
  for (int64_t e = 0; e < m; ++e) {
    const float v = in[e], g = dy[e];
    float d = 0.f;
    switch (op) {
      case UnaryOp::Affine: d = a * g; break;
      case UnaryOp::Exp: d = g * y[e]; break;
      case UnaryOp::Log: d = g / v; break;
      case UnaryOp::Sqrt: d = g * 0.5f / y[e]; break;
      case UnaryOp::Square: d = 2.f * v * g; break;
      case UnaryOp::Abs: d = v > 0.f ? g : (v < 0.f ? -g : 0.f); break;
      case UnaryOp::Clip: d = v >= a && v <= b ? g : 0.f; break;
      case UnaryOp::Pow: d = g * a * std::pow(v, a - 1.f); break;
      case UnaryOp::RDiv: d = -g * y[e] / v; break;
      case UnaryOp::Log1p: d = g / (1.f + v); break;
      case UnaryOp::Expm1: d = g * (y[e] + 1.f); break;
      case UnaryOp::Sin: d = g * std::cos(v); break;
      case UnaryOp::Cos: d = -g * std::sin(v); break;
      case UnaryOp::Sign: case UnaryOp::Floor: case UnaryOp::Round: case UnaryOp::Trunc:
        break;
    }
    out[e] = d;
  }
}

// ---- BinaryNode ------------------------------------------------------------------------

void BinaryNode::plan(int64_t n) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  int64_t vsize = 0;
  for (const Operand* o : {&a_, &b_})
    if (o->var >= 0) vsize = std::max(vsize, o->size);
  partial_.resize(blocks * vsize);
}

static inline float binary_apply(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Subtract: return a - b;
    case BinaryOp::Multiply: return a * b;
    case BinaryOp::Divide: return a / b;
    case BinaryOp::Power: return std::pow(a, b);
    case BinaryOp::Maximum: return a > b ? a : b;
    case BinaryOp::Minimum: return a < b ? a : b;
    case BinaryOp::Greater: return a > b ? 1.f : 0.f;
    case BinaryOp::GreaterEqual: return a >= b ? 1.f : 0.f;
    case BinaryOp::Less: return a < b ? 1.f : 0.f;
    case BinaryOp::LessEqual: return a <= b ? 1.f : 0.f;
    case BinaryOp::Equal: return a == b ? 1.f : 0.f;
    case BinaryOp::NotEqual: return a != b ? 1.f : 0.f;
  }
  return 0.f;
}

float BinaryNode::grad_of(int s, float a, float b, float y, float g) const {
  switch (op_) {
    case BinaryOp::Add: return g;
    case BinaryOp::Subtract: return s == 0 ? g : -g;
    case BinaryOp::Multiply: return s == 0 ? g * b : g * a;
    case BinaryOp::Divide: return s == 0 ? g / b : -g * a / (b * b);
    case BinaryOp::Power:
      if (s == 0) return g * b * std::pow(a, b - 1.f);
      return a > 0.f ? g * y * std::log(a) : 0.f;
    case BinaryOp::Maximum: case BinaryOp::Minimum: {
      const float mine = s == 0 ? a : b, other = s == 0 ? b : a;
      if (mine == other) return 0.5f * g;
      return mine == y ? g : 0.f;
    }
    default: return 0.f;
  }
}

void BinaryNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  const int64_t per = out_size;
  const float* a_var = a_.var >= 0 ? vars[a_.var].var->data() : nullptr;
  const float* b_var = b_.var >= 0 ? vars[b_.var].var->data() : nullptr;
#pragma omp parallel for schedule(static) if (n * per > kParallel)
  for (int64_t i = 0; i < n; ++i) {
    const float* pa = a_var ? a_var : x[a_.input] + i * a_.size;
    const float* pb = b_var ? b_var : x[b_.input] + i * b_.size;
    float* out = y + i * per;
    if (a_.map.empty() && b_.map.empty()) {
      for (int64_t e = 0; e < per; ++e) out[e] = binary_apply(op_, pa[e], pb[e]);
    } else {
      for (int64_t e = 0; e < per; ++e)
        out[e] = binary_apply(op_, pa[at(a_.map, e)], pb[at(b_.map, e)]);
    }
  }
}

void BinaryNode::backward(const StepCtx&, const float* const* x, const float* y, float* dy,
                          float* const* dx, int64_t n, bool) {
  if (op_ >= BinaryOp::Greater) {  // comparisons: no gradient
    for (const Operand* o : {&a_, &b_}) {
      if (o->input >= 0 && dx[o->input]) std::fill(dx[o->input], dx[o->input] + n * o->size, 0.f);
      if (o->var >= 0 && vars[o->var].grad)
        std::fill(vars[o->var].grad, vars[o->var].grad + o->size, 0.f);
    }
    return;
  }
  const int64_t per = out_size;
  const float* a_var = a_.var >= 0 ? vars[a_.var].var->data() : nullptr;
  const float* b_var = b_.var >= 0 ? vars[b_.var].var->data() : nullptr;
  auto operands = [&](int64_t i, int64_t e, float& a, float& b) {
    a = (a_var ? a_var : x[a_.input] + i * a_.size)[at(a_.map, e)];
    b = (b_var ? b_var : x[b_.input] + i * b_.size)[at(b_.map, e)];
  };
  for (int s = 0; s < 2; ++s) {
    const Operand& o = s == 0 ? a_ : b_;
    if (o.input >= 0) {
      float* d = dx[o.input];
      if (!d) continue;
#pragma omp parallel for schedule(static) if (n * per > kParallel)
      for (int64_t i = 0; i < n; ++i) {
        float* di = d + i * o.size;
        if (!o.map.empty()) std::fill(di, di + o.size, 0.f);
        for (int64_t e = 0; e < per; ++e) {
          float a, b;
          operands(i, e, a, b);
          const float g = grad_of(s, a, b, y[i * per + e], dy[i * per + e]);
          if (o.map.empty()) di[e] = g;
          else di[o.map[e]] += g;
        }
      }
    } else {
      float* grad = vars[o.var].grad;
      if (!grad) continue;
      const int64_t blocks = (n + kBlock - 1) / kBlock, size = o.size;
      float* part = partial_.data();
#pragma omp parallel for schedule(static) if (n * per > kParallel)
      for (int64_t blk = 0; blk < blocks; ++blk) {
        float* p = part + blk * size;
        std::fill(p, p + size, 0.f);
        for (int64_t i = blk * kBlock; i < std::min(n, (blk + 1) * kBlock); ++i)
          for (int64_t e = 0; e < per; ++e) {
            float a, b;
            operands(i, e, a, b);
            p[at(o.map, e)] += grad_of(s, a, b, y[i * per + e], dy[i * per + e]);
          }
      }
      std::fill(grad, grad + size, 0.f);
      for (int64_t blk = 0; blk < blocks; ++blk)
        for (int64_t k = 0; k < size; ++k) grad[k] += part[blk * size + k];
    }
  }
}

// ---- ReduceNode ------------------------------------------------------------------------

ReduceNode::ReduceNode(ReduceOp op, std::vector<int32_t> map, std::vector<int32_t> pos,
                       int64_t out_size)
    : op_(op), map_(std::move(map)), pos_(std::move(pos)), count_(out_size, 0.f) {
  for (int32_t o : map_) count_[o] += 1.f;
}

void ReduceNode::plan(int64_t n) {
  if (op_ != ReduceOp::Sum && op_ != ReduceOp::Mean) scratch_.resize(n * out_size);
}

bool ReduceNode::plan_inference(int64_t n) {
  if (op_ != ReduceOp::ArgMax && op_ != ReduceOp::ArgMin) return false;
  const bool grew = scratch_.size() < n * out_size;
  scratch_.resize(std::max(scratch_.size(), n * out_size));
  return grew;
}

void ReduceNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  const int64_t per_in = in_sizes[0], per = out_size;
  const ReduceOp op = op_;
  const bool arg = op == ReduceOp::ArgMax || op == ReduceOp::ArgMin;
  const bool bigger = op == ReduceOp::Max || op == ReduceOp::ArgMax;
#pragma omp parallel for schedule(static) if (n * per_in > kParallel)
  for (int64_t i = 0; i < n; ++i) {
    const float* in = x[0] + i * per_in;
    float* out = y + i * per;
    if (op == ReduceOp::Sum || op == ReduceOp::Mean) {
      std::fill(out, out + per, 0.f);
      for (int64_t e = 0; e < per_in; ++e) out[map_[e]] += in[e];
      if (op == ReduceOp::Mean)
        for (int64_t o = 0; o < per; ++o) out[o] /= count_[o];
      continue;
    }
    // Extremes: NaN wins, as in NumPy. Arg ops find the extremes in the scratch, then
    // the position of the first element equal to its group's extreme.
    float* ext = arg ? scratch_.data() + i * per : out;
    const float init = bigger ? -std::numeric_limits<float>::infinity()
                              : std::numeric_limits<float>::infinity();
    std::fill(ext, ext + per, init);
    for (int64_t e = 0; e < per_in; ++e) {
      const float v = in[e];
      float& r = ext[map_[e]];
      if (!std::isnan(r) && (std::isnan(v) || (bigger ? v > r : v < r))) r = v;
    }
    if (!arg) continue;
    std::fill(out, out + per, -1.f);
    for (int64_t e = 0; e < per_in; ++e) {
      const int64_t o = map_[e];
      const bool hit = in[e] == ext[o] || (std::isnan(in[e]) && std::isnan(ext[o]));
      if (out[o] < 0.f && hit) out[o] = static_cast<float>(pos_[e]);
    }
  }
}

void ReduceNode::backward(const StepCtx&, const float* const* x, const float* y, float* dy,
                          float* const* dx, int64_t n, bool) {
  if (!dx[0]) return;
  const int64_t per_in = in_sizes[0], per = out_size;
  const ReduceOp op = op_;
#pragma omp parallel for schedule(static) if (n * per_in > kParallel)
  for (int64_t i = 0; i < n; ++i) {
    const float* in = x[0] + i * per_in;
    const float* out = y + i * per;
    const float* g = dy + i * per;
    float* d = dx[0] + i * per_in;
    switch (op) {
      case ReduceOp::Sum:
        for (int64_t e = 0; e < per_in; ++e) d[e] = g[map_[e]];
        break;
      case ReduceOp::Mean:
        for (int64_t e = 0; e < per_in; ++e) d[e] = g[map_[e]] / count_[map_[e]];
        break;
      case ReduceOp::Max: case ReduceOp::Min: {
        float* t = scratch_.data() + i * per;
        std::fill(t, t + per, 0.f);
        for (int64_t e = 0; e < per_in; ++e) t[map_[e]] += in[e] == out[map_[e]] ? 1.f : 0.f;
        for (int64_t e = 0; e < per_in; ++e) {
          const int64_t o = map_[e];
          d[e] = in[e] == out[o] ? g[o] / t[o] : 0.f;
        }
        break;
      }
      default:
        std::fill(d, d + per_in, 0.f);
    }
  }
}

// ---- GatherNode ------------------------------------------------------------------------

void GatherNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  const int64_t per_in = in_sizes[0], per = out_size;
  const int32_t* map = map_.data();
#pragma omp parallel for schedule(static) if (n * per > kParallel)
  for (int64_t i = 0; i < n; ++i) {
    const float* in = x[0] + i * per_in;
    float* out = y + i * per;
    for (int64_t e = 0; e < per; ++e) out[e] = in[map[e]];
  }
}

void GatherNode::backward(const StepCtx&, const float* const*, const float*, float* dy,
                          float* const* dx, int64_t n, bool) {
  if (!dx[0]) return;
  const int64_t per_in = in_sizes[0], per = out_size;
  const int32_t* map = map_.data();
#pragma omp parallel for schedule(static) if (n * per > kParallel)
  for (int64_t i = 0; i < n; ++i) {
    float* d = dx[0] + i * per_in;
    const float* g = dy + i * per;
    std::fill(d, d + per_in, 0.f);
    for (int64_t e = 0; e < per; ++e) d[map[e]] += g[e];
  }
}

// ---- MatMulNode ------------------------------------------------------------------------

void MatMulNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  const int64_t total = n * batch_, sa = m_ * k_, sb = k_ * n_, sc = m_ * n_;
#pragma omp parallel for schedule(static) if (total > 1 && total * sc * k_ > kParallel)
  for (int64_t p = 0; p < total; ++p) {
    SerialGemm serial(total > 1);
    sgemm(Trans::N, Trans::N, m_, n_, k_, 1.f, x[0] + p * sa, k_, x[1] + p * sb, n_, 0.f,
          y + p * sc, n_);
  }
}

// dA = dC B^T, dB = A^T dC, per product.
void MatMulNode::backward(const StepCtx&, const float* const* x, const float*, float* dy,
                          float* const* dx, int64_t n, bool) {
  const int64_t total = n * batch_, sa = m_ * k_, sb = k_ * n_, sc = m_ * n_;
#pragma omp parallel for schedule(static) if (total > 1 && total * sc * k_ > kParallel)
  for (int64_t p = 0; p < total; ++p) {
    SerialGemm serial(total > 1);
    if (dx[0])
      sgemm(Trans::N, Trans::T, m_, k_, n_, 1.f, dy + p * sc, n_, x[1] + p * sb, n_, 0.f,
            dx[0] + p * sa, k_);
    if (dx[1])
      sgemm(Trans::T, Trans::N, k_, n_, m_, 1.f, x[0] + p * sa, k_, dy + p * sc, n_, 0.f,
            dx[1] + p * sb, n_);
  }
}

// ---- VariableNode ----------------------------------------------------------------------

void VariableNode::forward(const StepCtx&, const float* const*, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) std::copy_n(vars[0].var->data(), out_size, y + i * out_size);
}

void VariableNode::backward(const StepCtx&, const float* const*, const float*, float* dy,
                            float* const*, int64_t n, bool) {
  float* g = vars[0].grad;
  if (!g) return;
  std::copy_n(dy, out_size, g);
  for (int64_t i = 1; i < n; ++i)
    for (int64_t e = 0; e < out_size; ++e) g[e] += dy[i * out_size + e];
}

}  // namespace ember
