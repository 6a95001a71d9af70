// graph.cpp: the executor: nodes, the memory plan, and the three step functions.
#include "ember/graph.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "ember/conv2d.h"
#include "ember/dense.h"
#include "ember/dropout.h"
#include "ember/embedding.h"
#include "ember/parallel.h"
#include "ember/pooling.h"

namespace ember {
namespace {

// Values per sample above this are refused (their products would overflow int64).
constexpr int64_t kMaxSampleSize = int64_t(1) << 40;

int64_t product(const std::vector<int64_t>& s) {
  int64_t p = 1;
  for (int64_t d : s) p *= d;
  return p;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

// params: kernel (k, units) then bias (units), Keras's order. A sample of shape
// (..., k) is rows() rows of k (Keras applies Dense to the last axis).
class DenseNode : public Node {
 public:
  DenseNode(bool use_bias) : use_bias_(use_bias) {}
  const char* kind() const override { return "Dense"; }
  int64_t rows() const { return out_size / out_shape.back(); }
  void forward(StepCtx& ctx, const float* x, float* y, int64_t n) override {
    const int64_t r = rows(), k = in_size / r, u = out_shape.back();
    const float* w = ctx.params + param_offset;
    dense_forward(x, w, use_bias_ ? w + k * u : nullptr, y, n * r, k, u, act, ctx.training);
  }
  // The same product as a layer of sgemm_small_chain, writing y (1-D samples only).
  ChainLayer chain_layer(const StepCtx& ctx, float* y) const {
    ChainLayer L;
    L.w = ctx.params + param_offset;
    L.k = in_size;
    L.n = out_size;
    L.ep.bias = use_bias_ ? L.w + in_size * out_size : nullptr;
    L.ep.relu = act == Act::Relu;
    L.y = y;
    return L;
  }
  void backward(StepCtx& ctx, const float* x, const float* y, float* dy, float* dx,
                int64_t n, bool preact) override {
    const int64_t r = rows(), k = in_size / r, u = out_shape.back();
    if (!preact && act != Act::Linear && !act_backward_done_by_next)
      act_backward(act, y, dy, dy, n * r, u);
    const float* w = ctx.params + param_offset;
    float* dw = ctx.grads + param_offset;
    dense_backward(x, w, dy, dx, dw, use_bias_ ? dw + k * u : nullptr, n * r, k, u);
  }

 private:
  bool use_bias_;
};

// An activation of the last axis (softmax normalises each row of it; the others act
// element by element).
class ActivationNode : public Node {
 public:
  const char* kind() const override { return "Activation"; }
  void forward(StepCtx&, const float* x, float* y, int64_t n) override {
    const int64_t u = out_shape.back();
    act_forward(act, x, y, n * (out_size / u), u);
  }
  void backward(StepCtx&, const float*, const float* y, float* dy, float* dx, int64_t n,
                bool preact) override {
    if (!dx) return;
    const int64_t u = out_shape.back();
    if (preact || act_backward_done_by_next)
      std::memcpy(dx, dy, sizeof(float) * n * out_size);
    else
      act_backward(act, y, dy, dx, n * (out_size / u), u);
  }
};

class DropoutNode : public Node {
 public:
  DropoutNode(float rate, uint64_t seed) : rate_(rate), seed_(seed) {}
  const char* kind() const override { return "Dropout"; }
  int64_t saved_per_sample() const override { return out_size; }
  bool identity_in_inference() const override { return true; }
  void forward(StepCtx& ctx, const float* x, float* y, int64_t n) override {
    training_ = ctx.training && rate_ > 0.f;
    if (training_)
      dropout_forward(x, y, saved, n * out_size, rate_, seed_, ctx.step);
    else
      std::memcpy(y, x, sizeof(float) * n * out_size);
  }
  void backward(StepCtx&, const float*, const float*, float* dy, float* dx, int64_t n,
                bool) override {
    if (!dx) return;
    if (training_)
      dropout_backward(dy, saved, dx, n * out_size);
    else
      std::memcpy(dx, dy, sizeof(float) * n * out_size);
  }

 private:
  float rate_;
  uint64_t seed_;
  bool training_ = false;
};

class ReshapeNode : public Node {
 public:
  const char* kind() const override { return "Reshape"; }
  bool is_view() const override { return true; }
  void forward(StepCtx&, const float*, float*, int64_t) override {}
  void backward(StepCtx&, const float*, const float*, float*, float*, int64_t,
                bool) override {}
};

// A layer's geometry (stored for one sample) with the batch size of this call.
template <class Shape>
Shape with_batch(Shape s, int64_t n) {
  s.n = n;
  return s;
}

// params: kernel (kh, kw, c, f) then bias (f). `shape` is the layer's geometry for
// one image; each call sets the batch.
class Conv2DNode : public Node {
 public:
  Conv2DNode(const Conv2DShape& shape, bool use_bias) : shape_(shape), use_bias_(use_bias) {}
  const char* kind() const override { return "Conv2D"; }
  void forward(StepCtx& ctx, const float* x, float* y, int64_t n) override {
    const float* w = ctx.params + param_offset;
    conv2d_forward(with_batch(shape_, n), x, w, use_bias_ ? w + shape_.k() * shape_.f : nullptr, y, act);
  }
  void backward(StepCtx& ctx, const float* x, const float* y, float* dy, float* dx,
                int64_t n, bool preact) override {
    if (!preact && act != Act::Linear && !act_backward_done_by_next)
      act_backward(act, y, dy, dy, n * out_size / shape_.f, shape_.f);
    const float* w = ctx.params + param_offset;
    float* dw = ctx.grads + param_offset;
    conv2d_backward(with_batch(shape_, n), x, w, dy, dx, dw, use_bias_ ? dw + shape_.k() * shape_.f : nullptr);
  }

 private:
  Conv2DShape shape_;
  bool use_bias_;
};

// Max or average pooling; max keeps the argmax of each output for backward.
class Pool2DNode : public Node {
 public:
  Pool2DNode(const Pool2DShape& shape, bool max) : shape_(shape), max_(max) {}
  const char* kind() const override { return max_ ? "MaxPooling2D" : "AveragePooling2D"; }
  int64_t saved_per_sample() const override { return max_ ? out_size : 0; }
  bool absorbs_relu_backward() const override { return max_; }
  void forward(StepCtx& ctx, const float* x, float* y, int64_t n) override {
    if (max_)
      maxpool2d_forward(with_batch(shape_, n), x, y, ctx.training ? argmax() : nullptr);
    else
      avgpool2d_forward(with_batch(shape_, n), x, y);
  }
  void backward(StepCtx&, const float*, const float* y, float* dy, float* dx, int64_t n,
                bool) override {
    if (!dx) return;
    if (max_)
      maxpool2d_backward(with_batch(shape_, n), dy, argmax(), dx, relu_backward_of_prev ? y : nullptr);
    else
      avgpool2d_backward(with_batch(shape_, n), dy, dx);
  }

 private:
  // The saved buffer holds int32 offsets (same size as float).
  int32_t* argmax() { return reinterpret_cast<int32_t*>(saved); }
  Pool2DShape shape_;
  bool max_;
};

// Global max/average over every position of a (…, c) sample: (hw, c) -> (c).
// masked: steps whose token id in the model input is 0 are left out.
class GlobalPoolNode : public Node {
 public:
  GlobalPoolNode(bool max, bool masked) : max_(max), masked_(masked) {}
  const char* kind() const override { return max_ ? "GlobalMaxPooling" : "GlobalAveragePooling"; }
  int64_t saved_per_sample() const override { return max_ ? out_size : 0; }
  bool absorbs_relu_backward() const override { return max_; }
  void forward(StepCtx& ctx, const float* x, float* y, int64_t n) override {
    const int64_t hw = in_size / out_size, c = out_size;
    const float* ids = masked_ ? ctx.input : nullptr;
    if (max_)
      global_maxpool_forward(x, y, ctx.training ? argmax() : nullptr, n, hw, c, ids);
    else
      global_avgpool_forward(x, y, n, hw, c, ids);
  }
  void backward(StepCtx& ctx, const float*, const float* y, float* dy, float* dx, int64_t n,
                bool) override {
    if (!dx) return;
    const int64_t hw = in_size / out_size, c = out_size;
    if (max_)
      global_maxpool_backward(dy, argmax(), dx, n, hw, c, relu_backward_of_prev ? y : nullptr);
    else
      global_avgpool_backward(dy, dx, n, hw, c, masked_ ? ctx.input : nullptr);
  }

 private:
  int32_t* argmax() { return reinterpret_cast<int32_t*>(saved); }
  bool max_, masked_;
};

// params: the table (input_dim, output_dim). Its gradient is sparse: the rows the batch
// used, collected per step, handed to the optimizer through `sparse` (VarSpan). Fused
// with a following global max pooling (fuse_max_pool) it outputs (output_dim) per
// sample and keeps the winning step of each output.
class EmbeddingNode : public Node {
 public:
  EmbeddingNode(int64_t input_dim, int64_t output_dim, int64_t steps, bool mask_zero)
      : vocab_(input_dim), dim_(output_dim), steps_(steps), mask_zero_(mask_zero) {
    slot_.resize(vocab_);
    std::fill(slot_.data(), slot_.data() + vocab_, -1);
    sparse.cols = dim_;
  }
  const char* kind() const override { return "Embedding"; }
  int64_t saved_per_sample() const override { return fused_ ? dim_ : 0; }
  void fuse_max_pool() { fused_ = true; }
  bool fused() const { return fused_; }
  void plan(int64_t n) override {
    // Growing rows_ discards the rows of the last step: release their slots first.
    clear_rows(slot_.data(), rows_.data(), sparse.count);
    sparse.count = 0;
    const int64_t ids = n * steps_, most = std::min(ids, vocab_);
    rows_.resize(fused_ ? std::min(n * dim_, vocab_) : most);
    values_.resize((fused_ ? std::min(n * dim_, vocab_) : most) * dim_);
    if (!fused_) {
      offsets_.resize(most + 1);
      order_.resize(ids);
    }
  }
  void forward(StepCtx& ctx, const float* x, float* y, int64_t n) override {
    const int64_t bad = embedding_bad_id(x, n * steps_, vocab_);
    if (bad >= 0)
      throw std::invalid_argument(
          "Embedding: index " + std::to_string(x[bad]) + " (sample " +
          std::to_string(bad / steps_) + ", step " + std::to_string(bad % steps_) +
          ") is outside [0, input_dim=" + std::to_string(vocab_) + ")");
    const float* table = ctx.params + param_offset;
    if (fused_)
      embedding_maxpool_forward(x, table, y, ctx.training ? argmax() : nullptr, n, steps_,
                                dim_, mask_zero_);
    else
      embedding_forward(x, table, y, n * steps_, dim_);
  }
  void backward(StepCtx&, const float* x, const float*, float* dy, float*, int64_t n,
                bool) override {
    clear_rows(slot_.data(), rows_.data(), sparse.count);
    int64_t count;
    if (fused_) {
      count = collect_argmax_rows(x, argmax(), n, steps_, dim_, slot_.data(), rows_.data());
      embedding_maxpool_backward(x, argmax(), dy, n, steps_, dim_, slot_.data(), count,
                                 values_.data());
    } else {
      count = collect_rows(x, n * steps_, slot_.data(), rows_.data());
      embedding_backward(x, dy, n * steps_, dim_, slot_.data(), count, offsets_.data(),
                         order_.data(), values_.data());
    }
    sparse.count = count;
    sparse.rows = rows_.data();
    sparse.slot = slot_.data();
    sparse.values = values_.data();
  }
  SparseRows sparse;

 private:
  int32_t* argmax() { return reinterpret_cast<int32_t*>(saved); }
  int64_t vocab_, dim_, steps_;
  bool mask_zero_, fused_ = false;
  AlignedBuffer<int32_t> slot_, rows_, order_;
  AlignedBuffer<int64_t> offsets_;
  FloatBuffer values_;
};

}  // namespace

Graph::Graph(std::vector<int64_t> input_shape) : input_shape_(std::move(input_shape)) {
  if (input_shape_.empty())
    throw std::invalid_argument("Graph: the input shape must have at least one dimension");
  int64_t size = 1;
  for (int64_t d : input_shape_) {
    if (d <= 0)
      throw std::invalid_argument("Graph: input dimensions must be positive. Received: " +
                                  shape_str(input_shape_));
    if (d > kMaxSampleSize / size)
      throw std::invalid_argument("Graph: an input sample of shape " + shape_str(input_shape_) +
                                  " has more than 2^40 values");
    size *= d;
  }
  input_size_ = size;
  act_.assign(1, nullptr);
}

const std::vector<int64_t>& Graph::output_shape() const {
  return nodes_.empty() ? input_shape_ : nodes_.back()->out_shape;
}

int64_t Graph::output_size() const { return product(output_shape()); }

int Graph::add_node(std::unique_ptr<Node> node, std::vector<int64_t> out_shape,
                    std::vector<int64_t> var_sizes) {
  if (capacity_ > 0) throw std::logic_error("Graph: cannot add nodes after the first step");
  node->in_size = product(output_shape());
  node->out_shape = std::move(out_shape);
  node->out_size = product(node->out_shape);
  node->param_offset = params_.size();
  int64_t params = 0;
  for (int64_t v : var_sizes) {
    vars_.push_back(VarSpan{node->param_offset + params, v, true, true});
    params += v;
  }
  node->param_count = params;
  node->var_sizes = std::move(var_sizes);
  // Parameters are one contiguous buffer; growing it keeps earlier values.
  FloatBuffer grown(params_.size() + params);
  if (params_.size()) std::memcpy(grown.data(), params_.data(), sizeof(float) * params_.size());
  params_ = std::move(grown);
  if (opt_) opt_->resize(params_.size());
  // A relu followed directly by max pooling: the pool does the relu's backward.
  if (node->absorbs_relu_backward() && !nodes_.empty() && !nodes_.back()->is_view() &&
      nodes_.back()->act == Act::Relu) {
    node->relu_backward_of_prev = true;
    nodes_.back()->act_backward_done_by_next = true;
  }
  nodes_.push_back(std::move(node));
  mask_live_ = false;  // only dropout and activation nodes pass a mask on
  act_buf_.emplace_back();
  saved_.emplace_back();
  act_.push_back(nullptr);
  dense_chain_only_ = find_dense_chain_only();
  return static_cast<int>(nodes_.size()) - 1;
}

int Graph::add_dense(int64_t units, Act act, bool use_bias) {
  if (units <= 0)
    throw std::invalid_argument("Dense: units must be positive. Received: units=" +
                                std::to_string(units));
  const std::vector<int64_t>& in = output_shape();
  std::vector<int64_t> out = in;
  out.back() = units;
  // Dense acts on the last axis; for higher-rank input it maps each row.
  auto node = std::make_unique<DenseNode>(use_bias);
  node->act = act;
  const int64_t last = in.back();
  std::vector<int64_t> vars{last * units};
  if (use_bias) vars.push_back(units);
  return add_node(std::move(node), out, std::move(vars));
}

int Graph::add_conv2d(int64_t filters, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                      int64_t dh, int64_t dw, bool same, Act act, bool use_bias, bool causal) {
  const std::vector<int64_t> in = output_shape();
  if (in.size() != 3)
    throw std::invalid_argument("Conv2D expects samples of shape (height, width, channels). "
                                "Received per-sample shape " + shape_str(in));
  const int64_t causal_pad = causal ? (kw - 1) * dw : 0;
  Conv2DShape s = conv2d_shape(1, in[0], in[1] + causal_pad, in[2], kh, kw, filters, sh, sw, dh,
                               dw, same && !causal);
  s.w = in[1];
  s.pad_left += causal_pad;
  auto node = std::make_unique<Conv2DNode>(s, use_bias);
  node->act = act;
  std::vector<int64_t> vars{s.k() * filters};
  if (use_bias) vars.push_back(filters);
  return add_node(std::move(node), {s.oh, s.ow, filters}, std::move(vars));
}

int Graph::add_pool2d(bool max, int64_t ph, int64_t pw, int64_t sh, int64_t sw, bool same) {
  const std::vector<int64_t> in = output_shape();
  if (in.size() != 3)
    throw std::invalid_argument(std::string(max ? "MaxPooling2D" : "AveragePooling2D") +
                                " expects samples of shape (height, width, channels). "
                                "Received per-sample shape " + shape_str(in));
  const Pool2DShape s = pool2d_shape(1, in[0], in[1], in[2], ph, pw, sh, sw, same);
  return add_node(std::make_unique<Pool2DNode>(s, max), {s.oh, s.ow, in[2]}, {});
}

int Graph::add_global_pool(bool max, int64_t spatial_dims, bool keepdims) {
  const std::vector<int64_t> in = output_shape();
  if (static_cast<int64_t>(in.size()) != spatial_dims + 1)
    throw std::invalid_argument("Global pooling over " + std::to_string(spatial_dims) +
                                " spatial axes expects samples of rank " +
                                std::to_string(spatial_dims + 1) + ". Received per-sample shape " +
                                shape_str(in));
  std::vector<int64_t> out{in.back()};
  if (keepdims) {
    out.assign(spatial_dims + 1, 1);
    out.back() = in.back();
  }
  auto* emb = nodes_.empty() ? nullptr : dynamic_cast<EmbeddingNode*>(nodes_.back().get());
  if (max && spatial_dims == 1 && emb && !emb->fused()) {
    // Embedding + global max pooling in one node; this layer becomes a view.
    emb->fuse_max_pool();
    emb->out_shape = {in.back()};
    emb->out_size = in.back();
    mask_live_ = false;
    return add_node(std::make_unique<ReshapeNode>(), out, {});
  }
  const bool masked = spatial_dims == 1 && mask_live_;
  return add_node(std::make_unique<GlobalPoolNode>(max, masked), out, {});
}

int Graph::add_embedding(int64_t input_dim, int64_t output_dim, bool mask_zero) {
  const std::vector<int64_t> in = output_shape();
  if (!nodes_.empty())
    throw std::invalid_argument("Embedding must be the first layer of the model (its input "
                                "is the token ids)");
  if (input_dim <= 0 || output_dim <= 0)
    throw std::invalid_argument("Embedding: input_dim and output_dim must be positive. "
                                "Received: input_dim=" + std::to_string(input_dim) +
                                ", output_dim=" + std::to_string(output_dim));
  if (input_dim > (int64_t(1) << 24))
    throw std::invalid_argument("Embedding: input_dim above 2^24 (" + std::to_string(input_dim) +
                                ") is not supported: ids travel as float32");
  if (in.size() != 1)
    throw std::invalid_argument("Embedding expects samples of shape (steps,). Received "
                                "per-sample shape " + shape_str(in));
  auto node = std::make_unique<EmbeddingNode>(input_dim, output_dim, in[0], mask_zero);
  EmbeddingNode* raw = node.get();
  const int index = add_node(std::move(node), {in[0], output_dim}, {input_dim * output_dim});
  vars_.back().sparse = &raw->sparse;
  mask_live_ = mask_zero;
  return index;
}

int Graph::add_activation(Act act) {
  auto node = std::make_unique<ActivationNode>();
  node->act = act;
  const bool mask = mask_live_;  // activations pass a mask on, as in Keras
  const int index = add_node(std::move(node), output_shape(), {});
  mask_live_ = mask;
  return index;
}

int Graph::add_dropout(float rate, uint64_t seed) {
  if (!(rate >= 0.f && rate < 1.f))
    throw std::invalid_argument("Dropout: rate must be in [0, 1). Received: rate=" +
                                std::to_string(rate));
  const bool mask = mask_live_;
  const int index = add_node(std::make_unique<DropoutNode>(rate, seed), output_shape(), {});
  mask_live_ = mask;
  return index;
}

int Graph::add_reshape(std::vector<int64_t> shape) {
  if (shape.empty() || product(shape) != product(output_shape()))
    throw std::invalid_argument("Reshape: cannot reshape " + shape_str(output_shape()) +
                                " to " + shape_str(shape));
  return add_node(std::make_unique<ReshapeNode>(), std::move(shape), {});
}

void Graph::set_loss(Loss loss, bool from_logits, float param) {
  if (loss == Loss::Huber && !(param > 0.f))
    throw std::invalid_argument("Huber: delta must be positive. Received: delta=" +
                                std::to_string(param));
  std::lock_guard<std::mutex> lock(mu_);  // waits for a step running in another thread
  loss_ = loss;
  loss_param_ = param;
  from_logits_ = from_logits;
  has_loss_ = true;
}

void Graph::set_metrics(std::vector<MetricSpec> metrics) {
  std::lock_guard<std::mutex> lock(mu_);
  metrics_ = std::move(metrics);
}

void Graph::set_optimizer(const OptimizerConfig& cfg) {
  auto opt = std::make_unique<Optimizer>(cfg);
  opt->resize(params_.size());
  std::lock_guard<std::mutex> lock(mu_);
  opt_ = std::move(opt);
}

void Graph::set_variable_flags(const std::vector<bool>& trainable,
                               const std::vector<bool>& decay) {
  if (trainable.size() != vars_.size() || decay.size() != vars_.size())
    throw std::invalid_argument("set_variable_flags: expected " + std::to_string(vars_.size()) +
                                " flags per list");
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < vars_.size(); ++i) {
    vars_[i].trainable = trainable[i];
    vars_[i].decay = decay[i];
  }
}

// n * per_row, or std::bad_alloc (MemoryError in Python) when it overflows.
static int64_t rows_times(int64_t n, int64_t per_row) {
  if (per_row > 0 && n > std::numeric_limits<int64_t>::max() / 64 / per_row)
    throw std::bad_alloc();
  return n * per_row;
}

// Strong guarantee: a buffer only ever grows on a successful allocation (AlignedBuffer
// keeps its old storage when one fails), and the capacities are recorded only once
// every buffer has grown. A failed allocation (std::bad_alloc) therefore leaves buffers
// that still fit the old capacity, and the next batch that fits runs as before.
void Graph::plan(int64_t n, bool training) {
  const bool grow = n > capacity_, grow_training = training && n > train_capacity_;
  if (grow) {
    input_.resize(rows_times(n, input_size_));
    for (size_t i = 0; i < nodes_.size(); ++i)
      if (!nodes_[i]->is_view()) act_buf_[i].resize(rows_times(n, nodes_[i]->out_size));
    y_.resize(rows_times(n, output_size()));
    labels_.resize(rows_times(n, 1));
    sw_.resize(rows_times(n, 1));
  }
  if (grow_training) {  // what only backward needs: inference never allocates it
    grads_.resize(params_.size());
    int64_t widest = input_size_;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      Node& node = *nodes_[i];
      widest = std::max(widest, node.out_size);
      if (node.saved_per_sample()) {
        saved_[i].resize(rows_times(n, node.saved_per_sample()));
        node.saved = saved_[i].data();
      }
      node.plan(n);
    }
    grad_a_.resize(rows_times(n, widest));
    grad_b_.resize(rows_times(n, widest));
  }
  if (grow || grow_training) ++allocations_;
  if (grow) capacity_ = n;
  if (grow_training) train_capacity_ = n;
}

int64_t Graph::inference_rows(int64_t n) const {
  int64_t per_sample = input_size_;
  for (const auto& node : nodes_)
    if (!node->is_view()) per_sample += node->out_size;
  const int64_t most = std::max<int64_t>(1, kInferenceFloats / per_sample);
  const int64_t chunks = (n + most - 1) / most;
  return (n + chunks - 1) / chunks;  // equal chunks
}

// Rows [s, s + m) of the batch b.
static Batch sub_batch(const Batch& b, int64_t s, int64_t m) {
  Batch c = b;
  if (c.idx) c.idx += s; else c.start += s;
  c.n = m;
  return c;
}

void Graph::check_batch(const Batch& b, bool need_targets) const {
  if (b.n <= 0)
    throw std::invalid_argument("Expected a non-empty batch. Received: n=" +
                                std::to_string(b.n));
  if (!b.x) throw std::invalid_argument("Graph: no input data");
  if (b.idx) {
    for (int64_t i = 0; i < b.n; ++i)
      if (b.idx[i] < 0 || b.idx[i] >= b.rows)
        throw std::invalid_argument("Graph: batch index " + std::to_string(b.idx[i]) +
                                    " out of range [0, " + std::to_string(b.rows) + ")");
  } else if (b.start < 0 || b.start + b.n > b.rows) {
    throw std::invalid_argument("Graph: batch rows out of range");
  }
  if (need_targets) {
    if (!has_loss_) throw std::logic_error("The model must be compiled before training");
    if (loss_sparse(loss_) ? !b.labels : !b.y)
      throw std::invalid_argument(std::string("Graph: the loss needs ") +
                                  (loss_sparse(loss_) ? "integer labels" : "float targets"));
  }
}

// Rows of the batch as one contiguous (n, size) block: a pointer into the caller's
// array for a contiguous range, else a gather into dst.
template <class T>
static const T* rows_of(const T* src, int64_t size, const Batch& b, T* dst) {
  if (!src) return nullptr;
  if (!b.idx) return src + b.start * size;
#pragma omp parallel for schedule(static) if (b.n * size > (1 << 16))
  for (int64_t i = 0; i < b.n; ++i)
    std::memcpy(dst + i * size, src + b.idx[i] * size, sizeof(T) * size);
  return dst;
}

const float* Graph::gather_input(const Batch& b) { return rows_of(b.x, input_size_, b, input_.data()); }

void Graph::forward(const float* x, int64_t n, bool training) {
  StepCtx ctx{params_.data(), grads_.data(), training, step_, x};
  act_[0] = const_cast<float*>(x);
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node& node = *nodes_[i];
    if (training ? node.is_view() : node.view_in_inference()) {
      act_[i + 1] = act_[i];
      continue;
    }
    if (!training && n <= kSmallM) {
      const size_t end = forward_dense_chain(ctx, i, n);
      if (end > i) {
        i = end - 1;
        continue;
      }
    }
    act_[i + 1] = act_buf_[i].data();
    node.forward(ctx, act_[i], act_[i + 1], n);
  }
}

size_t Graph::forward_dense_chain(StepCtx& ctx, size_t first, int64_t n) {
  // Dense nodes, each but the last ending in a ReLU or nothing (what the chain's
  // epilogue does), with only views and inference identities between them.
  auto passes = [&](size_t i) { return nodes_[i]->view_in_inference(); };
  chain_.clear();
  size_t end = first;
  for (size_t i = first; i < nodes_.size();) {
    const auto* dense = dynamic_cast<const DenseNode*>(nodes_[i].get());
    if (!dense || dense->out_shape.size() != 1) break;  // the chain takes 1-D samples
    chain_.push_back(dense->chain_layer(ctx, act_buf_[i].data()));
    end = i + 1;
    if (dense->act != Act::Linear && dense->act != Act::Relu) break;
    for (++i; i < nodes_.size() && passes(i);) ++i;
  }
  if (chain_.size() < 2) return first;
  // The whole forward pass is the chain: no OpenMP region runs around it, so it may
  // use the helper threads.
  sgemm_small_chain(n, act_[first], chain_.data(), static_cast<int64_t>(chain_.size()),
                    dense_chain_only_);
  for (size_t i = first; i < end; ++i) act_[i + 1] = passes(i) ? act_[i] : act_buf_[i].data();
  const Node& last = *nodes_[end - 1];
  if (last.act != Act::Linear && last.act != Act::Relu)
    act_forward(last.act, act_[end], act_[end], n, last.out_size);
  return end;
}

bool Graph::find_dense_chain_only() const {
  int dense = 0;
  const Node* last = nullptr;
  for (const auto& node : nodes_) {
    if (node->view_in_inference()) continue;
    if (!dynamic_cast<const DenseNode*>(node.get()) || node->out_shape.size() != 1)
      return false;
    if (last && last->act != Act::Linear && last->act != Act::Relu) return false;
    last = node.get();
    ++dense;
  }
  return dense >= 2;
}

StepResult Graph::train_step(const Batch& b, float lr) {
  std::lock_guard<std::mutex> lock(mu_);
  OpenMPUse openmp(true);
  check_batch(b, true);
  if (!opt_) throw std::logic_error("The model must be compiled before training");
  if (!(lr >= 0.f)) throw std::invalid_argument("learning rate must be >= 0");
  plan(b.n, true);
  const int64_t n = b.n, c = output_size();
  const float* x = gather_input(b);
  const int32_t* labels = rows_of(b.labels, 1, b, labels_.data());
  const float* y = rows_of(b.y, c, b, y_.data());
  const float* sw = rows_of(b.sw, 1, b, sw_.data());

  ++step_;
  forward(x, n, true);
  const float* out = act_[nodes_.size()];

  // The activation producing the output, for fusing it into the loss gradient.
  int last = static_cast<int>(nodes_.size()) - 1;
  while (last >= 0 && nodes_[last]->is_view()) --last;
  const Act out_act = last >= 0 ? nodes_[last]->act : Act::Linear;
  const bool fused = loss_fuses(loss_, from_logits_, out_act);

  StepResult r;
  float* g = grad_a_.data();
  float* other = grad_b_.data();
  r.loss_sum = loss_forward_backward<float>(loss_, from_logits_, out_act, out, labels, y, sw,
                                            g, n, c, 1.f / static_cast<float>(n), loss_param_);
  for (const MetricSpec& m : metrics_) r.metric_sums.push_back(metric_sum(m, out, labels, y, sw, n, c));

  // Backward, last node first; gradients stop at the first node with trainable
  // weights (frozen leading layers need no backward at all).
  auto trains = [&](const Node& node) {
    for (const VarSpan& v : vars_)
      if (v.trainable && v.offset >= node.param_offset &&
          v.offset < node.param_offset + node.param_count)
        return true;
    return false;
  };
  int first_param = 0;
  while (first_param < static_cast<int>(nodes_.size()) && !trains(*nodes_[first_param]))
    ++first_param;
  StepCtx ctx{params_.data(), grads_.data(), true, step_, x};
  for (int i = last; i >= first_param; --i) {
    Node& node = *nodes_[i];
    if (node.is_view()) continue;
    float* dx = i > first_param ? other : nullptr;
    node.backward(ctx, act_[i], act_[i + 1], g, dx, n, fused && i == last);
    if (dx) std::swap(g, other);
  }
  opt_->apply(params_.data(), grads_.data(), vars_, lr);
  return r;
}

StepResult Graph::test_step(const Batch& b) {
  std::lock_guard<std::mutex> lock(mu_);
  OpenMPUse openmp(!(b.n <= kSmallM && dense_chain_only()));
  check_batch(b, true);
  const int64_t rows = inference_rows(b.n), c = output_size();
  StepResult r;
  r.metric_sums.assign(metrics_.size(), 0.0);
  for (int64_t s = 0; s < b.n; s += rows) {
    const Batch part = sub_batch(b, s, std::min(rows, b.n - s));
    const int64_t n = part.n;
    plan(n, false);
    const int32_t* labels = rows_of(part.labels, 1, part, labels_.data());
    const float* y = rows_of(part.y, c, part, y_.data());
    const float* sw = rows_of(part.sw, 1, part, sw_.data());
    forward(gather_input(part), n, false);
    const float* out = act_[nodes_.size()];
    r.loss_sum += loss_forward<float>(loss_, from_logits_, out, labels, y, sw, n, c, loss_param_);
    for (size_t m = 0; m < metrics_.size(); ++m)
      r.metric_sums[m] += metric_sum(metrics_[m], out, labels, y, sw, n, c);
  }
  return r;
}

void Graph::predict(const Batch& b, float* out) {
  std::lock_guard<std::mutex> lock(mu_);
  OpenMPUse openmp(!(b.n <= kSmallM && dense_chain_only()));
  check_batch(b, false);
  const int64_t rows = inference_rows(b.n), c = output_size();
  for (int64_t s = 0; s < b.n; s += rows) {
    const Batch part = sub_batch(b, s, std::min(rows, b.n - s));
    plan(part.n, false);
    forward(gather_input(part), part.n, false);
    std::memcpy(out + s * c, act_[nodes_.size()], sizeof(float) * part.n * c);
  }
}

}  // namespace ember
