// graph.cpp: the executor: building the DAG, the fusion passes, the memory plan by
// liveness, and the three step functions. The nodes live in src/nodes/.
#include "ember/graph.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "ember/parallel.h"

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

// n * per_row, or std::bad_alloc (MemoryError in Python) when it overflows.
int64_t rows_times(int64_t n, int64_t per_row) {
  if (per_row > 0 && n > std::numeric_limits<int64_t>::max() / 64 / per_row)
    throw std::bad_alloc();
  return n * per_row;
}

void add_into(float* dst, const float* src, int64_t m) {
#pragma omp parallel for schedule(static) if (m > (1 << 16))
  for (int64_t i = 0; i < m; ++i) dst[i] += src[i];
}

// Rows of the batch as one contiguous (n, size) block: a pointer into the caller's
// array for a contiguous range, else a gather into dst.
template <class T>
const T* rows_of(const T* src, int64_t size, const Batch& b, T* dst) {
  if (!src) return nullptr;
  if (!b.idx) return src + b.start * size;
#pragma omp parallel for schedule(static) if (b.n * size > (1 << 16))
  for (int64_t i = 0; i < b.n; ++i)
    std::memcpy(dst + i * size, src + b.idx[i] * size, sizeof(T) * size);
  return dst;
}

// Rows [s, s + m) of the batch b.
Batch sub_batch(const Batch& b, int64_t s, int64_t m) {
  Batch c = b;
  if (c.idx) c.idx += s; else c.start += s;
  c.n = m;
  return c;
}

}  // namespace

// -- building ------------------------------------------------------------------------

int Graph::check_value(int v, const char* who) const {
  if (v < 0 || v >= static_cast<int>(values_.size()))
    throw std::invalid_argument(std::string(who) + ": unknown value id " + std::to_string(v));
  return v;
}

const std::vector<int64_t>& Graph::value_shape(int v) const {
  return values_.at(check_value(v, "value_shape")).shape;
}

int Graph::add_input(std::vector<int64_t> shape) {
  if (finalized_) throw std::logic_error("Graph: cannot add inputs after the first step");
  if (shape.empty())
    throw std::invalid_argument("Graph: an input shape must have at least one dimension");
  int64_t size = 1;
  for (int64_t d : shape) {
    if (d <= 0)
      throw std::invalid_argument("Graph: input dimensions must be positive. Received: " +
                                  shape_str(shape));
    if (d > kMaxSampleSize / size)
      throw std::invalid_argument("Graph: an input sample of shape " + shape_str(shape) +
                                  " has more than 2^40 values");
    size *= d;
  }
  Value v;
  v.shape = std::move(shape);
  v.size = size;
  values_.push_back(std::move(v));
  inputs_.push_back(static_cast<int>(values_.size()) - 1);
  return inputs_.back();
}

int Graph::add_node(std::unique_ptr<Node> node, const std::vector<int>& inputs,
                    std::vector<int64_t> out_shape, std::vector<VariablePtr> vars,
                    int data_inputs) {
  if (finalized_) throw std::logic_error("Graph: cannot add nodes after the first step");
  for (int64_t d : out_shape)
    if (d <= 0 || d > kMaxSampleSize)
      throw std::invalid_argument(std::string(node->kind()) + ": invalid output shape " +
                                  shape_str(out_shape));
  const int id = static_cast<int>(nodes_.size());
  node->inputs = inputs;
  node->data_inputs = data_inputs < 0 ? static_cast<int>(inputs.size()) : data_inputs;
  for (int v : inputs) node->in_sizes.push_back(values_[v].size);
  node->out_size = product(out_shape);
  node->out_shape = out_shape;
  std::vector<VariablePtr> added;
  for (const VariablePtr& v : vars) {
    if (!v) continue;
    node->vars.push_back(VarUse{v.get(), nullptr});
    if (std::find(vars_.begin(), vars_.end(), v) == vars_.end() &&
        std::find(added.begin(), added.end(), v) == added.end())
      added.push_back(v);
  }
  Value out;
  out.shape = std::move(out_shape);
  out.size = node->out_size;
  out.producer = id;
  values_.reserve(values_.size() + 1);
  nodes_.reserve(nodes_.size() + 1);
  vars_.reserve(vars_.size() + added.size());
  trainable_.reserve(vars_.size() + added.size());
  decay_.reserve(vars_.size() + added.size());
  // Nothing below throws: the graph changes only once everything is checked.
  values_.push_back(std::move(out));
  node->output = static_cast<int>(values_.size()) - 1;
  for (int v : inputs) values_[v].readers.push_back(id);
  for (const VariablePtr& v : added) {
    vars_.push_back(v);
    trainable_.push_back(true);
    decay_.push_back(true);
  }
  nodes_.push_back(std::move(node));
  return nodes_.back()->output;
}

static void check_var(const VariablePtr& v, const std::vector<int64_t>& shape,
                      const char* who, const char* what) {
  if (!v) throw std::invalid_argument(std::string(who) + ": missing " + what);
  if (v->shape() != shape)
    throw std::invalid_argument(std::string(who) + ": the " + what + " must have shape " +
                                shape_str(shape) + ". Received: " + shape_str(v->shape()));
}

int Graph::add_dense(int x, VariablePtr kernel, VariablePtr bias, Act act) {
  const std::vector<int64_t>& in = values_.at(check_value(x, "Dense")).shape;
  if (!kernel || kernel->shape().size() != 2)
    throw std::invalid_argument("Dense: the kernel must be 2-D (input_dim, units)");
  const int64_t units = kernel->shape()[1];
  check_var(kernel, {in.back(), units}, "Dense", "kernel");
  if (bias) check_var(bias, {units}, "Dense", "bias");
  std::vector<int64_t> out = in;
  out.back() = units;
  auto node = std::make_unique<DenseNode>();
  // An activation whose derivative needs its input runs as a node of its own.
  node->act = act_needs_input(act) ? Act::Linear : act;
  int y = add_node(std::move(node), {x}, out, {kernel, bias});
  values_[y].mask = values_[x].mask;  // Dense maps each step: the mask passes, as in Keras
  return act_needs_input(act) ? add_activation(y, act) : y;
}

int Graph::add_conv2d(int x, VariablePtr kernel, VariablePtr bias, int64_t sh, int64_t sw,
                      int64_t dh, int64_t dw, bool same, Act act, bool causal) {
  const std::vector<int64_t> in = values_.at(check_value(x, "Conv2D")).shape;
  if (in.size() != 3)
    throw std::invalid_argument("Conv2D expects samples of shape (height, width, channels). "
                                "Received per-sample shape " + shape_str(in));
  if (!kernel || kernel->shape().size() != 4)
    throw std::invalid_argument("Conv2D: the kernel must be 4-D (kh, kw, channels, filters)");
  const auto& k = kernel->shape();
  check_var(kernel, {k[0], k[1], in[2], k[3]}, "Conv2D", "kernel");
  if (bias) check_var(bias, {k[3]}, "Conv2D", "bias");
  const int64_t causal_pad = causal ? (k[1] - 1) * dw : 0;
  Conv2DShape s = conv2d_shape(1, in[0], in[1] + causal_pad, in[2], k[0], k[1], k[3], sh, sw,
                               dh, dw, same && !causal);
  s.w = in[1];
  s.pad_left += causal_pad;
  auto node = std::make_unique<Conv2DNode>(s);
  node->act = act_needs_input(act) ? Act::Linear : act;
  const int y = add_node(std::move(node), {x}, {s.oh, s.ow, k[3]}, {kernel, bias});
  return act_needs_input(act) ? add_activation(y, act) : y;
}

int Graph::add_conv2d_transpose(int x, VariablePtr kernel, VariablePtr bias, int64_t sh,
                                int64_t sw, int64_t dh, int64_t dw, bool same, Act act) {
  const std::vector<int64_t> in = values_.at(check_value(x, "Conv2DTranspose")).shape;
  if (in.size() != 3)
    throw std::invalid_argument("Conv2DTranspose expects samples of shape (height, width, "
                                "channels). Received per-sample shape " + shape_str(in));
  if (!kernel || kernel->shape().size() != 4)
    throw std::invalid_argument("Conv2DTranspose: the kernel must be 4-D (kh, kw, filters, "
                                "channels)");
  const auto& k = kernel->shape();
  check_var(kernel, {k[0], k[1], k[2], in[2]}, "Conv2DTranspose", "kernel");
  if (bias) check_var(bias, {k[2]}, "Conv2DTranspose", "bias");
  if (sh <= 0 || sw <= 0 || dh <= 0 || dw <= 0)
    throw std::invalid_argument("Conv2DTranspose: strides and dilation_rate must be positive");
  auto length = [&](int64_t size, int64_t kk, int64_t st, int64_t d) {
    const int64_t eff = kk + (kk - 1) * (d - 1);
    return same ? size * st : size * st + std::max<int64_t>(eff - st, 0);
  };
  const int64_t oh = length(in[0], k[0], sh, dh), ow = length(in[1], k[1], sw, dw);
  // The convolution whose input gradient this is: input (oh, ow, filters), output in.
  const Conv2DShape s = conv2d_shape(1, oh, ow, k[2], k[0], k[1], in[2], sh, sw, dh, dw, same);
  if (s.oh != in[0] || s.ow != in[1])
    throw std::invalid_argument("Conv2DTranspose: no convolution maps " +
                                shape_str({oh, ow, k[2]}) + " to " + shape_str(in));
  auto node = std::make_unique<Conv2DTransposeNode>(s);
  node->act = act_needs_input(act) ? Act::Linear : act;
  const int y = add_node(std::move(node), {x}, {oh, ow, k[2]}, {kernel, bias});
  return act_needs_input(act) ? add_activation(y, act) : y;
}

int Graph::add_upsample(int x, int64_t sh, int64_t sw) {
  const std::vector<int64_t> in = values_.at(check_value(x, "UpSampling2D")).shape;
  if (in.size() != 3)
    throw std::invalid_argument("UpSampling2D expects samples of shape (height, width, "
                                "channels). Received per-sample shape " + shape_str(in));
  if (sh <= 0 || sw <= 0)
    throw std::invalid_argument("UpSampling2D: size must be positive. Received: (" +
                                std::to_string(sh) + ", " + std::to_string(sw) + ")");
  return add_node(std::make_unique<UpsampleNode>(in[0], in[1], in[2], sh, sw), {x},
                  {in[0] * sh, in[1] * sw, in[2]}, {});
}

int Graph::add_pad_crop(int x, int64_t top, int64_t bottom, int64_t left, int64_t right) {
  const std::vector<int64_t> in = values_.at(check_value(x, "ZeroPadding/Cropping")).shape;
  if (in.size() != 3)
    throw std::invalid_argument("Padding and cropping expect samples of shape (height, width, "
                                "channels). Received per-sample shape " + shape_str(in));
  const bool pad = top >= 0 && bottom >= 0 && left >= 0 && right >= 0;
  const bool crop = top <= 0 && bottom <= 0 && left <= 0 && right <= 0;
  const int64_t oh = in[0] + top + bottom, ow = in[1] + left + right;
  if (!(pad || crop))
    throw std::invalid_argument("One node either pads (all sizes >= 0) or crops (all <= 0)");
  if (oh <= 0 || ow <= 0)
    throw std::invalid_argument("Cropping " + std::to_string(-top - bottom) + " rows and " +
                                std::to_string(-left - right) + " columns leaves nothing of " +
                                shape_str(in));
  return add_node(std::make_unique<ShiftWindowNode>(in[0], in[1], oh, ow, in[2], top, left),
                  {x}, {oh, ow, in[2]}, {});
}

int Graph::add_pool2d(int x, bool max, int64_t ph, int64_t pw, int64_t sh, int64_t sw,
                      bool same) {
  const std::vector<int64_t> in = values_.at(check_value(x, "Pooling")).shape;
  if (in.size() != 3)
    throw std::invalid_argument(std::string(max ? "MaxPooling2D" : "AveragePooling2D") +
                                " expects samples of shape (height, width, channels). "
                                "Received per-sample shape " + shape_str(in));
  const Pool2DShape s = pool2d_shape(1, in[0], in[1], in[2], ph, pw, sh, sw, same);
  return add_node(std::make_unique<Pool2DNode>(s, max), {x}, {s.oh, s.ow, in[2]}, {});
}

int Graph::add_global_pool(int x, bool max, int64_t spatial_dims, bool keepdims) {
  const std::vector<int64_t> in = values_.at(check_value(x, "Global pooling")).shape;
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
  std::vector<int> inputs{x};
  const int mask = values_[x].mask;
  if (spatial_dims == 1 && mask >= 0) inputs.push_back(mask);  // the mask, a side input
  return add_node(std::make_unique<GlobalPoolNode>(max, spatial_dims), inputs, out, {}, 1);
}

int Graph::add_embedding(int ids, VariablePtr table, bool mask_zero) {
  const std::vector<int64_t> in = values_.at(check_value(ids, "Embedding")).shape;
  if (!table || table->shape().size() != 2 || table->shape()[0] <= 0 || table->shape()[1] <= 0)
    throw std::invalid_argument("Embedding: the table must be 2-D (input_dim, output_dim), "
                                "both positive");
  const int64_t input_dim = table->shape()[0], output_dim = table->shape()[1];
  if (input_dim > (int64_t(1) << 24))
    throw std::invalid_argument("Embedding: input_dim above 2^24 (" + std::to_string(input_dim) +
                                ") is not supported: ids travel as float32");
  if (in.size() != 1)
    throw std::invalid_argument("Embedding expects samples of shape (steps,). Received "
                                "per-sample shape " + shape_str(in));
  auto node = std::make_unique<EmbeddingNode>(input_dim, output_dim, in[0], mask_zero);
  const int out = add_node(std::move(node), {ids}, {in[0], output_dim}, {table}, 0);
  if (mask_zero) values_[out].mask = ids;
  return out;
}

int Graph::add_activation(int x, Act act, float alpha) {
  auto node = std::make_unique<ActivationNode>();
  node->act = act;
  node->alpha = alpha;
  const int out = add_node(std::move(node), {check_value(x, "Activation")}, values_[x].shape, {});
  values_[out].mask = values_[x].mask;  // activations pass a mask on, as in Keras
  return out;
}

int Graph::add_dropout(int x, float rate, uint64_t seed, NoiseKind kind) {
  const bool noise = kind == NoiseKind::GaussianNoise;
  if (noise ? !(rate >= 0.f && std::isfinite(rate)) : !(rate >= 0.f && rate < 1.f))
    throw std::invalid_argument(noise ? "GaussianNoise: stddev must be >= 0. Received: " +
                                            std::to_string(rate)
                                      : "Dropout: rate must be in [0, 1). Received: rate=" +
                                            std::to_string(rate));
  const std::vector<int64_t>& in = values_.at(check_value(x, "Dropout")).shape;
  if (kind == NoiseKind::Spatial && in.size() < 2)
    throw std::invalid_argument("SpatialDropout expects samples of (steps or height, width, "
                                "channels). Received per-sample shape " + shape_str(in));
  const int out = add_node(std::make_unique<DropoutNode>(kind, rate, seed, in.back()), {x}, in,
                           {});
  values_[out].mask = values_[x].mask;
  return out;
}

int Graph::add_batch_norm(int x, VariablePtr gamma, VariablePtr beta, VariablePtr moving_mean,
                          VariablePtr moving_variance, float epsilon, float momentum) {
  const std::vector<int64_t> in = values_.at(check_value(x, "BatchNormalization")).shape;
  const int64_t c = in.back();
  if (gamma) check_var(gamma, {c}, "BatchNormalization", "gamma");
  if (beta) check_var(beta, {c}, "BatchNormalization", "beta");
  check_var(moving_mean, {c}, "BatchNormalization", "moving_mean");
  check_var(moving_variance, {c}, "BatchNormalization", "moving_variance");
  if (!(epsilon > 0.f))
    throw std::invalid_argument("BatchNormalization: epsilon must be positive. Received: " +
                                std::to_string(epsilon));
  if (!(momentum >= 0.f && momentum <= 1.f))
    throw std::invalid_argument("BatchNormalization: momentum must be in [0, 1]. Received: " +
                                std::to_string(momentum));
  auto node = std::make_unique<BatchNormNode>(c, epsilon, momentum, gamma != nullptr,
                                              beta != nullptr);
  const int y = add_node(std::move(node), {x}, in, {gamma, beta, moving_mean, moving_variance});
  values_[y].mask = values_[x].mask;
  return y;
}

int Graph::add_layer_norm(int x, VariablePtr gamma, VariablePtr beta, float epsilon) {
  const std::vector<int64_t> in = values_.at(check_value(x, "LayerNormalization")).shape;
  const int64_t c = in.back();
  if (gamma) check_var(gamma, {c}, "LayerNormalization", "gamma");
  if (beta) check_var(beta, {c}, "LayerNormalization", "beta");
  if (!(epsilon > 0.f))
    throw std::invalid_argument("LayerNormalization: epsilon must be positive. Received: " +
                                std::to_string(epsilon));
  auto node = std::make_unique<LayerNormNode>(c, epsilon, gamma != nullptr, beta != nullptr);
  const int y = add_node(std::move(node), {x}, in, {gamma, beta});
  values_[y].mask = values_[x].mask;
  return y;
}

int Graph::add_permute(int x, std::vector<int64_t> perm) {
  const std::vector<int64_t> in = values_.at(check_value(x, "Permute")).shape;
  std::vector<int64_t> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  bool ok = perm.size() == in.size();
  for (size_t i = 0; ok && i < sorted.size(); ++i) ok = sorted[i] == static_cast<int64_t>(i);
  if (!ok)
    throw std::invalid_argument("Permute: dims must be a permutation of the sample's axes " +
                                shape_str(in));
  std::vector<int64_t> out;
  for (int64_t p : perm) out.push_back(in[p]);
  return add_node(std::make_unique<PermuteNode>(in, perm), {x}, out, {});
}

int Graph::add_prelu(int x, VariablePtr alpha) {
  const std::vector<int64_t> in = values_.at(check_value(x, "PReLU")).shape;
  if (!alpha || alpha->shape().size() != in.size())
    throw std::invalid_argument("PReLU: alpha must have the sample's rank " +
                                std::to_string(in.size()));
  for (size_t a = 0; a < in.size(); ++a)
    if (alpha->shape()[a] != in[a] && alpha->shape()[a] != 1)
      throw std::invalid_argument("PReLU: alpha of shape " + shape_str(alpha->shape()) +
                                  " does not broadcast to " + shape_str(in));
  const int y = add_node(std::make_unique<PReLUNode>(in, alpha->shape()), {x}, in, {alpha});
  values_[y].mask = values_[x].mask;
  return y;
}

int Graph::add_reshape(int x, std::vector<int64_t> shape) {
  const std::vector<int64_t>& in = values_.at(check_value(x, "Reshape")).shape;
  if (shape.empty() || product(shape) != product(in))
    throw std::invalid_argument("Reshape: cannot reshape " + shape_str(in) + " to " +
                                shape_str(shape));
  return add_node(std::make_unique<ReshapeNode>(), {x}, std::move(shape), {});
}

int Graph::add_merge(MergeOp op, const std::vector<int>& xs) {
  auto node = std::make_unique<MergeNode>(op);
  const std::string who = node->kind();
  if (xs.size() < 2 || (op == MergeOp::Subtract && xs.size() != 2))
    throw std::invalid_argument(who + (op == MergeOp::Subtract ? " takes exactly 2 inputs"
                                                               : " takes at least 2 inputs") +
                                ". Received: " + std::to_string(xs.size()));
  for (int v : xs) {
    check_value(v, who.c_str());
    if (values_[v].shape != values_[xs[0]].shape)
      throw std::invalid_argument(who + ": inputs must have the same shape. Received: " +
                                  shape_str(values_[xs[0]].shape) + " and " +
                                  shape_str(values_[v].shape));
  }
  const int mask = merged_mask(xs, who.c_str(), true);
  const int y = add_node(std::move(node), xs, values_[xs[0]].shape, {});
  values_[y].mask = mask;
  return y;
}

// The mask of a merge of xs (Keras: for Add and the like, none unless every input has
// one, then their union; for Concatenate, the masked inputs' intersection). ember's
// masks are "token id 0" masks of one id tensor: inputs masked by different ids
// cannot be merged yet.
int Graph::merged_mask(const std::vector<int>& xs, const char* who, bool all_needed) const {
  int mask = -1;
  for (int v : xs) {
    const int m = values_[v].mask;
    if (m < 0) {
      if (all_needed) return -1;
      continue;
    }
    if (mask >= 0 && m != mask)
      throw std::invalid_argument(std::string(who) + ": its inputs carry the masks of different "
                                  "Embedding(mask_zero=True) inputs, which ember cannot merge "
                                  "yet");
    mask = m;
  }
  return mask;
}

int Graph::add_concatenate(const std::vector<int>& xs, int64_t axis) {
  if (xs.size() < 2)
    throw std::invalid_argument("Concatenate takes at least 2 inputs. Received: " +
                                std::to_string(xs.size()));
  for (int v : xs) check_value(v, "Concatenate");
  const std::vector<int64_t>& first = values_[xs[0]].shape;
  const int64_t rank = static_cast<int64_t>(first.size());
  if (axis < 0 || axis >= rank)
    throw std::invalid_argument("Concatenate: axis " + std::to_string(axis) +
                                " is outside the per-sample rank " + std::to_string(rank));
  std::vector<int64_t> out = first;
  out[axis] = 0;
  for (int v : xs) {
    const std::vector<int64_t>& s = values_[v].shape;
    bool ok = static_cast<int64_t>(s.size()) == rank;
    for (int64_t d = 0; ok && d < rank; ++d) ok = d == axis || s[d] == first[d];
    if (!ok)
      throw std::invalid_argument("Concatenate: inputs must match except along the "
                                  "concatenation axis. Received: " + shape_str(first) + " and " +
                                  shape_str(s));
    out[axis] += s[axis];
  }
  int64_t outer = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= first[d];
  // Along the features of steps the mask survives; joining along the steps would need
  // the masks joined too.
  const int mask = merged_mask(xs, "Concatenate", false);
  if (mask >= 0 && axis == 0)
    throw std::invalid_argument("Concatenate: joining masked sequences along the steps axis "
                                "is not supported yet");
  const int y = add_node(std::make_unique<ConcatenateNode>(outer), xs, out, {});
  values_[y].mask = mask;
  return y;
}

int Graph::add_dot(int a, int b, bool normalize) {
  check_value(a, "Dot");
  check_value(b, "Dot");
  if (values_[a].shape.size() != 1 || values_[a].shape != values_[b].shape)
    throw std::invalid_argument("Dot takes two inputs of the same shape (d,) per sample. "
                                "Received: " + shape_str(values_[a].shape) + " and " +
                                shape_str(values_[b].shape));
  return add_node(std::make_unique<DotNode>(normalize), {a, b}, {1}, {});
}

void Graph::set_outputs(const std::vector<int>& values) {
  if (finalized_) throw std::logic_error("Graph: cannot change outputs after the first step");
  if (values.empty()) throw std::invalid_argument("Graph: a model needs at least one output");
  for (size_t i = 0; i < values.size(); ++i) {
    check_value(values[i], "set_outputs");
    for (size_t j = 0; j < i; ++j)
      if (values[j] == values[i])
        throw std::invalid_argument("Graph: the same tensor is listed twice as an output");
  }
  outputs_ = values;
  specs_.assign(values.size(), OutputSpec{});
}

void Graph::set_inference_only(int value, bool on) {
  const int p = values_.at(check_value(value, "set_inference_only")).producer;
  if (p < 0) throw std::invalid_argument("set_inference_only: a model input has no node");
  std::lock_guard<std::mutex> lock(mu_);
  nodes_[p]->inference_only = on;
}

void Graph::set_output_spec(int o, const OutputSpec& spec) {
  if (o < 0 || o >= num_outputs())
    throw std::invalid_argument("set_output_spec: no output " + std::to_string(o));
  if (spec.has_loss && spec.loss == Loss::Huber && !(spec.param > 0.f))
    throw std::invalid_argument("Huber: delta must be positive. Received: delta=" +
                                std::to_string(spec.param));
  if (spec.has_loss && values_[outputs_[o]].mask >= 0)
    throw std::invalid_argument(
        "Output " + std::to_string(o) + " carries the mask of an Embedding(mask_zero=True): "
        "ember does not apply masks to losses yet (Keras weights each step by the mask). "
        "Pool the steps first (e.g. GlobalAveragePooling1D), or drop mask_zero");
  if (!(spec.weight >= 0.f))
    throw std::invalid_argument("loss_weights must be non-negative. Received: " +
                                std::to_string(spec.weight));
  std::lock_guard<std::mutex> lock(mu_);  // waits for a step running in another thread
  specs_[o] = spec;
  training_planned_ = false;
}

bool Graph::output_is_sparse(int o) const {
  const OutputSpec& s = specs_.at(o);
  if (s.has_loss) return loss_sparse(s.loss);
  return !s.metrics.empty() && metric_sparse(s.metrics[0].kind);
}

void Graph::set_optimizer(std::shared_ptr<Optimizer> opt) {
  std::lock_guard<std::mutex> lock(mu_);
  opt_ = std::move(opt);
  training_planned_ = false;
}

void Graph::set_variable_flags(const std::vector<bool>& trainable,
                               const std::vector<bool>& decay) {
  if (trainable.size() != vars_.size() || decay.size() != vars_.size())
    throw std::invalid_argument("set_variable_flags: expected " + std::to_string(vars_.size()) +
                                " flags per list");
  std::lock_guard<std::mutex> lock(mu_);
  trainable_ = trainable;
  decay_ = decay;
  training_planned_ = false;
}

void Graph::set_variable_penalties(const std::vector<float>& l1, const std::vector<float>& l2) {
  if (l1.size() != vars_.size() || l2.size() != vars_.size())
    throw std::invalid_argument("set_variable_penalties: expected " +
                                std::to_string(vars_.size()) + " values per list");
  for (size_t k = 0; k < l1.size(); ++k)
    if (!(l1[k] >= 0.f) || !(l2[k] >= 0.f) || !std::isfinite(l1[k]) || !std::isfinite(l2[k]))
      throw std::invalid_argument("regularization factors must be finite and >= 0");
  std::lock_guard<std::mutex> lock(mu_);
  l1_ = l1;
  l2_ = l2;
}

void Graph::set_variable_constraints(const std::vector<Constraint>& constraints) {
  if (constraints.size() != vars_.size())
    throw std::invalid_argument("set_variable_constraints: expected " +
                                std::to_string(vars_.size()) + " constraints");
  for (size_t k = 0; k < constraints.size(); ++k) {
    const Constraint& c = constraints[k];
    if (c.rows <= 0 || vars_[k]->size() % c.rows != 0)
      throw std::invalid_argument("constraint: the norm axes do not divide the variable");
    if (c.kind == ConstraintKind::MinMaxNorm && !(c.min_value <= c.max_value))
      throw std::invalid_argument("MinMaxNorm: min_value must not exceed max_value");
  }
  std::lock_guard<std::mutex> lock(mu_);
  constraints_ = constraints;
}

double Graph::penalty(bool grads) {
  double total = 0;
  for (size_t k = 0; k < l1_.size(); ++k) {
    if ((l1_[k] == 0.f && l2_[k] == 0.f) || !trainable_[k]) continue;  // Keras: trainable only
    float* g = grads && var_grads_[k].size() ? var_grads_[k].data() : nullptr;
    total += add_penalty(vars_[k]->data(), g, vars_[k]->size(), l1_[k], l2_[k]);
  }
  return total;
}

// -- fusion passes (run once, before the first step) -----------------------------------

bool Graph::only_reader(int v, int node) const {
  const Value& val = values_[v];
  if (val.readers.size() != 1 || val.readers[0] != node) return false;
  return std::find(outputs_.begin(), outputs_.end(), v) == outputs_.end();
}

// Embedding -> GlobalMaxPooling1D, the embedding read by nothing else: one node that
// never writes the (n, steps, dim) intermediate; the pooling becomes a view.
void Graph::fuse_embedding_max_pool() {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    auto* pool = dynamic_cast<GlobalPoolNode*>(nodes_[i].get());
    if (!pool || !pool->max() || pool->spatial_dims() != 1) continue;
    const int e = pool->inputs[0];
    const int p = values_[e].producer;
    auto* emb = p >= 0 ? dynamic_cast<EmbeddingNode*>(nodes_[p].get()) : nullptr;
    if (!emb || emb->fused() || !only_reader(e, static_cast<int>(i))) continue;
    emb->fuse_max_pool();
    values_[e].shape = emb->out_shape;
    values_[e].size = emb->out_size;
    values_[e].mask = -1;
    auto view = std::make_unique<ReshapeNode>();
    view->inputs = {e};
    view->in_sizes = {emb->out_size};
    view->output = pool->output;
    view->out_shape = pool->out_shape;
    view->out_size = pool->out_size;
    if (pool->inputs.size() > 1) {  // the mask: the fused node applies it itself
      auto& r = values_[pool->inputs[1]].readers;
      r.erase(std::find(r.begin(), r.end(), static_cast<int>(i)));
    }
    nodes_[i] = std::move(view);
    fusions_.push_back("embedding+global_max_pool at node " + std::to_string(p));
  }
}

// An Activation layer after a Dense or Conv2D without one, the only reader of its
// output: the activation moves into the producer (the GEMM epilogue for relu) and the
// Activation node becomes a view.
void Graph::fuse_activation_into_producer() {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    auto* act = dynamic_cast<ActivationNode*>(nodes_[i].get());
    if (!act || act_needs_input(act->act) || !std::isnan(act->alpha)) continue;
    const int x = act->inputs[0], p = values_[x].producer;
    if (p < 0 || nodes_[p]->act != Act::Linear || !only_reader(x, static_cast<int>(i))) continue;
    if (!dynamic_cast<DenseNode*>(nodes_[p].get()) && !dynamic_cast<Conv2DNode*>(nodes_[p].get()))
      continue;
    nodes_[p]->act = act->act;
    auto view = std::make_unique<ReshapeNode>();
    view->inputs = act->inputs;
    view->in_sizes = act->in_sizes;
    view->output = act->output;
    view->out_shape = act->out_shape;
    view->out_size = act->out_size;
    nodes_[i] = std::move(view);
    fusions_.push_back("activation into node " + std::to_string(p));
  }
}

// The node that computes value v, looking back through views that only pass it on.
int Graph::producer_through_views(int v) const {
  int p = values_[v].producer;
  while (p >= 0 && nodes_[p]->is_view()) {
    v = nodes_[p]->inputs[0];
    if (values_[v].readers.size() != 1 ||
        std::find(outputs_.begin(), outputs_.end(), v) != outputs_.end())
      return -1;
    p = values_[v].producer;
  }
  return p;
}

// A relu read only by max pooling: the pooling's backward applies the relu's
// derivative at the winners, and the relu's own backward is skipped.
void Graph::fuse_relu_into_pool() {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node& pool = *nodes_[i];
    if (!pool.absorbs_relu_backward()) continue;
    const int x = pool.inputs[0], p = producer_through_views(x);
    if (p < 0 || nodes_[p]->act != Act::Relu) continue;
    if (!only_reader(x, static_cast<int>(i))) continue;
    pool.relu_backward_of_prev = true;
    nodes_[p]->act_backward_done_by_next = true;
    fusions_.push_back("relu backward into pooling at node " + std::to_string(i));
  }
}

// Dense nodes on 1-D samples, consecutive in the node order with only inference views
// (dropout, reshape) between them, each value read by the next alone, all but the last
// ending in a ReLU or nothing: inference at a few rows runs them as one
// sgemm_small_chain.
void Graph::find_dense_chains() {
  chain_at_.assign(nodes_.size(), -1);
  auto dense_1d = [&](int i) {
    return dynamic_cast<const DenseNode*>(nodes_[i].get()) && nodes_[i]->out_shape.size() == 1 &&
           values_[nodes_[i]->inputs[0]].shape.size() == 1;
  };
  const int N = static_cast<int>(nodes_.size());
  for (int i = 0; i < N; ++i) {
    if (!dense_1d(i)) continue;
    Chain c;
    c.first = c.last = i;
    c.dense.push_back(i);
    for (int cur = i;;) {
      const Act a = nodes_[cur]->act;
      if (a != Act::Linear && a != Act::Relu) break;
      int v = nodes_[cur]->output, j = cur + 1;
      while (j < N && nodes_[j]->view_in_inference() && nodes_[j]->inputs[0] == v &&
             only_reader(v, j)) {
        v = nodes_[j]->output;
        ++j;
      }
      if (j >= N || !dense_1d(j) || nodes_[j]->inputs[0] != v || !only_reader(v, j)) break;
      c.dense.push_back(j);
      c.last = cur = j;
    }
    if (c.dense.size() < 2) continue;
    chain_at_[i] = static_cast<int>(chains_.size());
    fusions_.push_back("dense chain of " + std::to_string(c.dense.size()) + " at node " +
                       std::to_string(i));
    chains_.push_back(c);
    i = c.last;
  }
  dense_chain_only_ = false;
  if (chains_.size() == 1 && inputs_.size() == 1 && outputs_.size() == 1) {
    dense_chain_only_ = true;
    for (int i = 0; i < N; ++i)
      if ((i < chains_[0].first || i > chains_[0].last) && !nodes_[i]->view_in_inference())
        dense_chain_only_ = false;
  }
}

// Inference buffers by liveness: walking the nodes in order, a value takes the buffer
// of a value whose last reader has run (the smallest that fits), or its own. A buffer
// is never grown for another value, so inference never holds more than training.
// Outputs are never given up.
void Graph::plan_inference_buffers() {
  const int V = static_cast<int>(values_.size());
  infer_home_.assign(V, -1);
  buf_floats_.assign(V, 0);
  std::vector<int> refs(V, 0), free;
  auto is_output = [&](int v) {
    return std::find(outputs_.begin(), outputs_.end(), v) != outputs_.end();
  };
  for (int v : inputs_) infer_home_[v] = v;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& node = *nodes_[i];
    const int out = node.output;
    int b;
    if (node.view_in_inference()) {
      b = infer_home_[node.inputs[0]];
    } else {
      int best = -1;  // the smallest free buffer that fits
      for (size_t k = 0; k < free.size(); ++k) {
        const int f = free[k];
        if (buf_floats_[f] >= node.out_size &&
            (best < 0 || buf_floats_[f] < buf_floats_[free[best]]))
          best = static_cast<int>(k);
      }
      if (best >= 0) {
        b = free[best];
        free.erase(free.begin() + best);
      } else {
        b = out;
      }
      buf_floats_[b] = std::max(buf_floats_[b], node.out_size);
    }
    infer_home_[out] = b;
    refs[b] += static_cast<int>(values_[out].readers.size()) + (is_output(out) ? 1 : 0);
    if (values_[out].producer >= 0 && refs[b] == 0 && !node.view_in_inference())
      free.push_back(b);  // read by nothing: free at once
    for (int u : node.inputs) {
      const int h = infer_home_[u];
      if (values_[h].producer < 0) continue;  // the caller's memory
      if (--refs[h] == 0) free.push_back(h);
    }
  }
  // Training keeps every non-view value in its own buffer (the same buffers).
  for (int v = 0; v < V; ++v) {
    const int p = values_[v].producer;
    if (p >= 0 && !nodes_[p]->is_view()) buf_floats_[v] = std::max(buf_floats_[v], values_[v].size);
  }
}

void Graph::finalize() {
  if (finalized_) return;
  if (outputs_.empty()) throw std::logic_error("Graph: set_outputs was never called");
  fuse_embedding_max_pool();
  fuse_activation_into_producer();
  fuse_relu_into_pool();
  find_dense_chains();
  plan_inference_buffers();
  const size_t V = values_.size();
  bufs_.resize(V);
  buf_rows_.assign(V, 0);
  val_.assign(V, nullptr);
  gbuf_.assign(V, -1);
  input_bufs_.resize(inputs_.size());
  y_.resize(outputs_.size());
  labels_.resize(outputs_.size());
  labels_ptr_.assign(outputs_.size(), nullptr);
  y_ptr_.assign(outputs_.size(), nullptr);
  size_t widest_inputs = 1;
  for (const auto& node : nodes_) widest_inputs = std::max(widest_inputs, node->inputs.size());
  node_in_.assign(widest_inputs, nullptr);
  node_dx_.assign(widest_inputs, nullptr);
  pending_adds_.reserve(widest_inputs);
  grown_.reserve(V);
  use_grads_.resize(nodes_.size());
  saved_.resize(nodes_.size());
  finalized_ = true;
}

int64_t Graph::inference_floats_per_sample() const {
  int64_t s = 0;
  for (size_t v = 0; v < values_.size(); ++v)
    if (values_[v].producer >= 0 && infer_home_.size() && infer_home_[v] == static_cast<int>(v))
      s += buf_floats_[v];
  return s;
}

int64_t Graph::training_floats_per_sample() const {
  int64_t s = 0;
  for (const auto& node : nodes_)
    if (!node->is_view()) s += node->out_size;
  return s;
}

std::vector<std::string> Graph::fusions() const { return fusions_; }

// -- memory plan ----------------------------------------------------------------------

// Strong guarantee: a buffer only ever grows on a successful allocation (AlignedBuffer
// keeps its old storage when one fails), and the capacities are recorded only once
// every buffer has grown. A failed allocation (std::bad_alloc) therefore leaves buffers
// that still fit the old capacities, and the next batch that fits runs as before.
void Graph::plan(int64_t n, bool training) {
  finalize();
  bool grew = false;
  if (n > input_capacity_) {
    for (size_t i = 0; i < inputs_.size(); ++i)
      input_bufs_[i].resize(rows_times(n, values_[inputs_[i]].size));
    for (size_t o = 0; o < outputs_.size(); ++o) {
      y_[o].resize(rows_times(n, values_[outputs_[o]].size));
      labels_[o].resize(n);
    }
    sw_.resize(n);
    grew = true;
  }
  std::vector<int>& grown = grown_;  // the buffers grown by this call
  grown.clear();
  for (const auto& node : nodes_) {
    if (training ? node->is_view() : node->view_in_inference()) continue;
    const int b = training ? node->output : infer_home_[node->output];
    if (buf_rows_[b] < n && std::find(grown.begin(), grown.end(), b) == grown.end()) {
      bufs_[b].resize(rows_times(n, buf_floats_[b]));
      grown.push_back(b);
    }
  }
  if (training && (n > train_capacity_ || !training_planned_)) {
    train_capacity_ = std::max(train_capacity_, n);  // re-planned below if it throws
    training_planned_ = false;
    plan_training();
    grew = true;
  }
  for (int b : grown) buf_rows_[b] = n;
  if (grew || !grown.empty()) ++allocations_;
  input_capacity_ = std::max(input_capacity_, n);
  capacity_ = std::max(capacity_, n);
}

size_t Graph::var_index(const Variable* v) const {
  for (size_t k = 0; k < vars_.size(); ++k)
    if (vars_[k].get() == v) return k;
  throw std::logic_error("Graph: a node uses a variable the graph does not list");
}

// What only training needs, for batches of up to train_capacity_ rows: variable
// gradients (trainable variables only), node scratch, the value-gradient pool, and the
// optimizer's list of variables. Allocates everything before changing anything.
void Graph::plan_training() {
  const int64_t n = train_capacity_;
  const int V = static_cast<int>(values_.size()), N = static_cast<int>(nodes_.size());
  // Which values need a gradient: those a trainable variable lies upstream of.
  std::vector<bool> needs(V, false);
  for (int i = 0; i < N; ++i) {
    const Node& node = *nodes_[i];
    bool need = false;
    for (const VarUse& u : node.vars) need = need || trainable_[var_index(u.var)];
    for (int j = 0; j < node.data_inputs; ++j) need = need || needs[node.inputs[j]];
    needs[node.output] = need;
  }
  // Which values a loss reaches. A node's backward runs when both hold.
  std::vector<bool> reach(V, false);
  for (size_t o = 0; o < outputs_.size(); ++o)
    if (specs_[o].has_loss) reach[outputs_[o]] = true;
  for (int i = N - 1; i >= 0; --i)
    if (reach[nodes_[i]->output])
      for (int j = 0; j < nodes_[i]->data_inputs; ++j) reach[nodes_[i]->inputs[j]] = true;
  for (int v = 0; v < V; ++v) needs[v] = needs[v] && reach[v];

  // Variable gradients: the first use (in node order) writes the variable's buffer,
  // later uses their own, added after backward in node order. A table shared by
  // several Embedding nodes takes a dense gradient that every use adds its rows to.
  std::vector<int> uses(vars_.size(), 0);
  for (int i = 0; i < N; ++i)
    if (needs[nodes_[i]->output])
      for (const VarUse& u : nodes_[i]->vars) ++uses[var_index(u.var)];
  std::vector<FloatBuffer> var_grads(vars_.size());
  for (size_t k = 0; k < vars_.size(); ++k)
    if (trainable_[k] && uses[k] > 0) var_grads[k].resize(vars_[k]->size());
  std::vector<std::vector<FloatBuffer>> use_grads(N);
  std::vector<int> seen(vars_.size(), 0);
  for (int i = 0; i < N; ++i) {
    const Node& node = *nodes_[i];
    use_grads[i].resize(node.vars.size());
    if (!needs[node.output] || dynamic_cast<const EmbeddingNode*>(&node)) continue;
    for (size_t j = 0; j < node.vars.size(); ++j) {
      const size_t k = var_index(node.vars[j].var);
      if (trainable_[k] && seen[k]++ > 0) use_grads[i][j].resize(vars_[k]->size());
    }
  }
  std::vector<FloatBuffer> saved(N);
  for (int i = 0; i < N; ++i)
    if (nodes_[i]->saved_per_sample())
      saved[i].resize(rows_times(n, nodes_[i]->saved_per_sample()));
  for (auto& node : nodes_) node->plan(n);
  std::vector<OptVar> opt_vars;
  if (opt_) {
    for (size_t k = 0; k < vars_.size(); ++k) {
      if (!trainable_[k] || uses[k] == 0) continue;
      OptVar ov;
      ov.var = vars_[k].get();
      ov.decay = decay_[k];
      ov.slots = &opt_->slots_for(vars_[k]);
      opt_vars.push_back(ov);
    }
  }
  const int64_t widest = [&] {
    int64_t w = 1;
    for (const Value& v : values_) w = std::max(w, v.size);
    return w;
  }();

  // Commit (nothing below allocates but the pool, sized last).
  needs_grad_ = needs;
  var_grads_ = std::move(var_grads);
  use_grads_ = std::move(use_grads);
  saved_ = std::move(saved);
  zeroed_grads_.clear();
  grad_sums_.clear();
  std::fill(seen.begin(), seen.end(), 0);
  for (int i = 0; i < N; ++i) {
    Node& node = *nodes_[i];
    node.saved = saved_[i].data();
    auto* emb = dynamic_cast<EmbeddingNode*>(&node);
    for (size_t j = 0; j < node.vars.size(); ++j) {
      const size_t k = var_index(node.vars[j].var);
      float* g = nullptr;
      if (needs_grad_[node.output] && trainable_[k]) {
        if (emb || seen[k]++ == 0) {
          g = var_grads_[k].data();
        } else {
          g = use_grads_[i][j].data();
          grad_sums_.push_back(GradSum{var_grads_[k].data(), g, vars_[k]->size()});
        }
      }
      node.vars[j].grad = g;
    }
    if (emb) {
      const size_t k = var_index(node.vars[0].var);
      emb->dense_grad = uses[k] > 1;
      if (emb->dense_grad && trainable_[k] &&
          std::find(zeroed_grads_.begin(), zeroed_grads_.end(), k) == zeroed_grads_.end())
        zeroed_grads_.push_back(static_cast<int>(k));
    }
  }
  for (OptVar& ov : opt_vars) {
    const size_t k = var_index(ov.var);
    ov.grad = var_grads_[k].data();
    for (const auto& node : nodes_) {
      auto* emb = dynamic_cast<EmbeddingNode*>(node.get());
      if (emb && emb->vars[0].var == ov.var && !emb->dense_grad) ov.sparse = &emb->sparse;
    }
  }
  opt_vars_ = std::move(opt_vars);
  // The value-gradient pool: as many buffers as backward ever holds at once.
  grad_width_ = widest;
  const int count = run_backward(0, true, nullptr);
  grad_pool_.resize(count);
  for (auto& b : grad_pool_) b.resize(rows_times(n, grad_width_));
  pool_refs_.assign(count, 0);
  pool_free_.reserve(count);
  training_planned_ = true;
}

// Once training has sized every buffer, chunks are sized as if inference used them all,
// so a large predict after training holds no more than before the buffers were shared.
int64_t Graph::inference_rows(int64_t n) const {
  int64_t per_sample =
      train_capacity_ > 0 ? training_floats_per_sample() : inference_floats_per_sample();
  for (int v : inputs_) per_sample += values_[v].size;
  const int64_t most = std::max<int64_t>(1, kInferenceFloats / std::max<int64_t>(1, per_sample));
  const int64_t chunks = (n + most - 1) / most;
  return (n + chunks - 1) / chunks;  // equal chunks
}

void Graph::check_batch(const Batch& b, bool need_targets) const {
  if (b.n <= 0)
    throw std::invalid_argument("Expected a non-empty batch. Received: n=" +
                                std::to_string(b.n));
  if (b.x.size() != inputs_.size())
    throw std::invalid_argument("The model takes " + std::to_string(inputs_.size()) +
                                " inputs. Received: " + std::to_string(b.x.size()));
  for (const float* x : b.x)
    if (!x) throw std::invalid_argument("Graph: no input data");
  if (b.idx) {
    for (int64_t i = 0; i < b.n; ++i)
      if (b.idx[i] < 0 || b.idx[i] >= b.rows)
        throw std::invalid_argument("Graph: batch index " + std::to_string(b.idx[i]) +
                                    " out of range [0, " + std::to_string(b.rows) + ")");
  } else if (b.start < 0 || b.start + b.n > b.rows) {
    throw std::invalid_argument("Graph: batch rows out of range");
  }
  if (!need_targets) return;
  bool any = false;
  for (size_t o = 0; o < outputs_.size(); ++o) {
    any = any || specs_[o].has_loss;
    if (!specs_[o].has_loss && specs_[o].metrics.empty()) continue;
    const bool sparse = output_is_sparse(static_cast<int>(o));
    const bool given = sparse ? (o < b.labels.size() && b.labels[o])
                              : (o < b.y.size() && b.y[o]);
    if (!given)
      throw std::invalid_argument("Graph: output " + std::to_string(o) + " needs " +
                                  (sparse ? "integer labels" : "float targets"));
  }
  if (!any) throw std::logic_error("The model must be compiled before training");
}

void Graph::gather_inputs(const Batch& b) {
  for (size_t i = 0; i < inputs_.size(); ++i)
    val_[inputs_[i]] = rows_of(b.x[i], values_[inputs_[i]].size, b, input_bufs_[i].data());
}

float* Graph::buffer_of(int v, bool training) {
  return bufs_[training ? v : infer_home_[v]].data();
}

// -- steps ------------------------------------------------------------------------------

void Graph::forward(int64_t n, bool training) {
  StepCtx ctx{training, step_};
  const int N = static_cast<int>(nodes_.size());
  for (int i = 0; i < N; ++i) {
    Node& node = *nodes_[i];
    const int out = node.output;
    if (training ? node.is_view() : node.view_in_inference()) {
      val_[out] = val_[node.inputs[0]];
      continue;
    }
    if (!training && n <= kSmallM && chain_at_[i] >= 0) {
      const Chain& c = chains_[chain_at_[i]];
      chain_layers_.clear();
      for (int d : c.dense)
        chain_layers_.push_back(static_cast<const DenseNode&>(*nodes_[d])
                                    .chain_layer(buffer_of(nodes_[d]->output, false)));
      // When the chain is the whole model no OpenMP region runs around it, so it may
      // use the helper threads.
      sgemm_small_chain(n, val_[node.inputs[0]], chain_layers_.data(),
                        static_cast<int64_t>(chain_layers_.size()), dense_chain_only_);
      for (int k = c.first; k <= c.last; ++k) {
        const Node& m = *nodes_[k];
        val_[m.output] = m.view_in_inference() ? val_[m.inputs[0]] : buffer_of(m.output, false);
      }
      const Node& last = *nodes_[c.last];
      if (last.act != Act::Linear && last.act != Act::Relu) {
        float* y = buffer_of(last.output, false);
        act_forward(last.act, y, y, n, last.out_size);
      }
      i = c.last;
      continue;
    }
    ctx.training = training && !node.inference_only;
    for (size_t j = 0; j < node.inputs.size(); ++j) node_in_[j] = val_[node.inputs[j]];
    float* y = buffer_of(out, training);
    node.forward(ctx, node_in_.data(), y, n);
    val_[out] = y;
  }
}

bool Graph::fused_loss(int o) const {
  const OutputSpec& s = specs_[o];
  int v = outputs_[o];
  if (!s.has_loss || !values_[v].readers.empty()) return false;
  int p = values_[v].producer;
  while (p >= 0 && nodes_[p]->is_view()) {
    v = nodes_[p]->inputs[0];
    if (values_[v].readers.size() != 1 ||
        std::find(outputs_.begin(), outputs_.end(), v) != outputs_.end())
      return false;
    p = values_[v].producer;
  }
  return p >= 0 && loss_fuses(s.loss, s.from_logits, nodes_[p]->act);
}

// Backward over the nodes, last first. Each value's gradient lives in a pool buffer;
// a value read by several nodes gets the first reader's gradient written and the
// others' added, in node order, so the bits do not depend on the thread count. A view
// hands its gradient buffer on. dry: only counts the buffers needed (returns it).
int Graph::run_backward(int64_t n, bool dry, StepResult* r) {
  int count = 0;
  std::vector<int>& free = pool_free_;
  free.clear();
  if (dry) pool_refs_.clear();
  auto refs = [&](int b) -> int& {
    if (dry && b >= static_cast<int>(pool_refs_.size())) pool_refs_.resize(b + 1, 0);
    return pool_refs_[b];
  };
  auto alloc = [&]() {
    int b;
    if (!free.empty()) {
      b = free.back();
      free.pop_back();
    } else {
      b = count++;
    }
    refs(b) = 1;
    return b;
  };
  auto drop = [&](int b) {
    if (--refs(b) == 0) free.push_back(b);
  };
  auto pool = [&](int b) { return dry ? nullptr : grad_pool_[b].data(); };
  std::fill(gbuf_.begin(), gbuf_.end(), -1);

  // The losses' gradients at the outputs (or at the pre-activation when fused).
  const float scale = 1.f / static_cast<float>(std::max<int64_t>(n, 1));
  preact_.assign(nodes_.size(), false);
  for (size_t o = 0; o < outputs_.size(); ++o) {
    const OutputSpec& s = specs_[o];
    if (!s.has_loss) continue;
    const int v = outputs_[o];
    const bool fused = fused_loss(static_cast<int>(o));
    int p = values_[v].producer;
    while (p >= 0 && nodes_[p]->is_view()) p = values_[nodes_[p]->inputs[0]].producer;
    if (fused) preact_[p] = true;
    const bool wanted = p >= 0 && needs_grad_[v];
    if (wanted) gbuf_[v] = alloc();
    if (dry) continue;
    const int64_t c = values_[v].size;
    const Act act = fused ? nodes_[p]->act : Act::Linear;
    double sum;
    if (wanted)
      sum = loss_forward_backward<float>(s.loss, s.from_logits, act, val_[v], labels_ptr_[o],
                                         y_ptr_[o], sw_ptr_, pool(gbuf_[v]), n, c,
                                         scale * s.weight, s.param);
    else
      sum = loss_forward<float>(s.loss, s.from_logits, val_[v], labels_ptr_[o], y_ptr_[o],
                                sw_ptr_, n, c, s.param);
    r->output_loss_sums[o] = sum;
    r->loss_sum += s.weight * sum;
  }

  StepCtx ctx{true, step_};
  std::vector<std::pair<int, int>>& adds = pending_adds_;  // (scratch buffer, value)
  for (int i = static_cast<int>(nodes_.size()) - 1; i >= 0; --i) {
    Node& node = *nodes_[i];
    const int out = node.output;
    const int b = gbuf_[out];
    if (b < 0) continue;
    gbuf_[out] = -1;
    auto wants = [&](int j) {
      const int u = node.inputs[j];
      return j < node.data_inputs && needs_grad_[u] && values_[u].producer >= 0;
    };
    if (!needs_grad_[out]) {
      drop(b);
      continue;
    }
    if (node.is_view()) {
      const int in = node.inputs[0];
      if (wants(0)) {
        if (gbuf_[in] < 0) {
          gbuf_[in] = b;
          ++refs(b);
        } else if (!dry) {
          add_into(pool(gbuf_[in]), pool(b), n * values_[in].size);
        }
      }
      drop(b);
      continue;
    }
    // Each input's gradient goes straight into its buffer if it has none yet, else
    // into scratch that is added once the node is done.
    adds.clear();
    for (int j = 0; j < static_cast<int>(node.inputs.size()); ++j) {
      node_dx_[j] = nullptr;
      if (!wants(j)) continue;
      const int u = node.inputs[j];
      if (gbuf_[u] < 0) {
        gbuf_[u] = alloc();
        node_dx_[j] = pool(gbuf_[u]);
      } else {
        const int s = alloc();
        adds.emplace_back(s, u);
        node_dx_[j] = pool(s);
      }
    }
    if (!dry) {
      ctx.training = !node.inference_only;
      for (size_t j = 0; j < node.inputs.size(); ++j) node_in_[j] = val_[node.inputs[j]];
      node.backward(ctx, node_in_.data(), val_[out], pool(b), node_dx_.data(), n, preact_[i]);
    }
    for (const auto& [s, u] : adds) {
      if (!dry) add_into(pool(gbuf_[u]), pool(s), n * values_[u].size);
      drop(s);
    }
    drop(b);
  }
  return count;
}

void Graph::gather_targets(const Batch& b) {
  for (size_t o = 0; o < outputs_.size(); ++o) {
    const int64_t c = values_[outputs_[o]].size;
    labels_ptr_[o] = rows_of(o < b.labels.size() ? b.labels[o] : nullptr, int64_t(1), b,
                             labels_[o].data());
    y_ptr_[o] = rows_of(o < b.y.size() ? b.y[o] : nullptr, c, b, y_[o].data());
  }
  sw_ptr_ = rows_of(b.sw, int64_t(1), b, sw_.data());
}

void Graph::add_metrics(StepResult& r, int64_t n) const {
  for (size_t o = 0; o < outputs_.size(); ++o) {
    const int64_t c = values_[outputs_[o]].size;
    for (const MetricSpec& m : specs_[o].metrics)
      r.metric_sums.push_back(
          metric_sum(m, val_[outputs_[o]], labels_ptr_[o], y_ptr_[o], sw_ptr_, n, c));
  }
}

StepResult Graph::train_step(const Batch& b, float lr) {
  std::lock_guard<std::mutex> lock(mu_);
  OpenMPUse openmp(true);
  check_batch(b, true);
  if (!opt_) throw std::logic_error("The model must be compiled before training");
  if (!(lr >= 0.f)) throw std::invalid_argument("learning rate must be >= 0");
  plan(b.n, true);
  const int64_t n = b.n;
  gather_inputs(b);
  gather_targets(b);
  ++step_;
  forward(n, true);
  StepResult r;
  r.output_loss_sums.assign(outputs_.size(), 0.0);
  add_metrics(r, n);
  for (int k : zeroed_grads_) var_grads_[k].zero();
  run_backward(n, false, &r);
  for (const GradSum& s : grad_sums_) add_into(s.dst, s.src, s.size);
  // Keras adds the regularizers' penalty to the batch's mean loss: n times to the sum.
  r.loss_sum += penalty(true) * static_cast<double>(n);
  opt_->apply(opt_vars_, lr);
  for (size_t k = 0; k < constraints_.size(); ++k)  // Keras: after the update
    if (trainable_[k]) apply_constraint(constraints_[k], vars_[k]->data(), vars_[k]->size());
  return r;
}

StepResult Graph::test_step(const Batch& b) {
  std::lock_guard<std::mutex> lock(mu_);
  OpenMPUse openmp(!(b.n <= kSmallM && dense_chain_only_));
  check_batch(b, true);
  finalize();
  const int64_t rows = inference_rows(b.n);
  StepResult r;
  r.output_loss_sums.assign(outputs_.size(), 0.0);
  size_t metrics = 0;
  for (const OutputSpec& s : specs_) metrics += s.metrics.size();
  r.metric_sums.assign(metrics, 0.0);
  StepResult part_r;
  for (int64_t s = 0; s < b.n; s += rows) {
    const Batch part = sub_batch(b, s, std::min(rows, b.n - s));
    const int64_t n = part.n;
    plan(n, false);
    gather_inputs(part);
    gather_targets(part);
    forward(n, false);
    for (size_t o = 0; o < outputs_.size(); ++o) {
      const OutputSpec& sp = specs_[o];
      if (!sp.has_loss) continue;
      const int v = outputs_[o];
      const double sum = loss_forward<float>(sp.loss, sp.from_logits, val_[v], labels_ptr_[o],
                                             y_ptr_[o], sw_ptr_, n, values_[v].size, sp.param);
      r.output_loss_sums[o] += sum;
      r.loss_sum += sp.weight * sum;
    }
    part_r.metric_sums.clear();
    add_metrics(part_r, n);
    for (size_t m = 0; m < metrics; ++m) r.metric_sums[m] += part_r.metric_sums[m];
  }
  r.loss_sum += penalty(false) * static_cast<double>(b.n);
  return r;
}

void Graph::predict(const Batch& b, const std::vector<float*>& out) {
  std::lock_guard<std::mutex> lock(mu_);
  OpenMPUse openmp(!(b.n <= kSmallM && dense_chain_only_));
  check_batch(b, false);
  finalize();
  if (out.size() != outputs_.size())
    throw std::invalid_argument("predict: expected one output array per model output");
  const int64_t rows = inference_rows(b.n);
  for (int64_t s = 0; s < b.n; s += rows) {
    const Batch part = sub_batch(b, s, std::min(rows, b.n - s));
    plan(part.n, false);
    gather_inputs(part);
    forward(part.n, false);
    for (size_t o = 0; o < outputs_.size(); ++o) {
      const int64_t c = values_[outputs_[o]].size;
      std::memcpy(out[o] + s * c, val_[outputs_[o]], sizeof(float) * part.n * c);
    }
  }
}

}  // namespace ember
