// graph_build.cpp: the Graph's builders: each checks its inputs' shapes and variables,
// then adds one node (or a few) and returns the value it makes.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "ember/graph.h"

namespace ember {
namespace {

// Values per sample above this are refused (their products would overflow int64).
constexpr int64_t kMaxSampleSize = int64_t(1) << 40;

int64_t product(const std::vector<int64_t>& s) {
  int64_t p = 1;
  for (int64_t d : s) p *= d;
  return p;
}

}  // namespace

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

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
  int64_t frames = 1, batch_frames = 1;  // every input's: a node works within one frame
  for (size_t j = 0; j < inputs.size(); ++j) {
    const Value& in = values_.at(check_value(inputs[j], node->kind()));
    if (j > 0 && (in.frames != frames || in.batch_frames != batch_frames))
      throw std::invalid_argument(std::string(node->kind()) + ": its inputs lie inside and "
                                  "outside a TimeDistributed layer (or a model's call)");
    frames = in.frames;
    batch_frames = in.batch_frames;
  }
  const int id = static_cast<int>(nodes_.size());
  node->frames = frames;
  node->batch_frames = batch_frames;
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
  out.frames = frames;
  out.batch_frames = batch_frames;
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

// A layer with weights and an activation: the activation rides in the node's output
// unless its derivative needs its input, when it runs as a node of its own.
int Graph::add_weighted(std::unique_ptr<Node> node, int x, std::vector<int64_t> out_shape,
                        std::vector<VariablePtr> vars, Act act, bool pass_mask) {
  const bool split = act_needs_input(act);
  node->act = split ? Act::Linear : act;
  const int y = add_node(std::move(node), {x}, std::move(out_shape), std::move(vars));
  if (pass_mask) values_[y].mask = values_[x].mask;
  return split ? add_activation(y, act) : y;
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
  // Dense maps each step: the mask passes, as in Keras.
  return add_weighted(std::make_unique<DenseNode>(), x, out, {kernel, bias}, act, true);
}

int Graph::add_conv2d(int x, VariablePtr kernel, VariablePtr bias, int64_t sh, int64_t sw,
                      int64_t dh, int64_t dw, bool same, Act act, bool causal, int64_t groups) {
  const std::vector<int64_t> in = values_.at(check_value(x, "Conv2D")).shape;
  if (in.size() != 3)
    throw std::invalid_argument("Conv2D expects samples of shape (height, width, channels). "
                                "Received per-sample shape " + shape_str(in));
  if (!kernel || kernel->shape().size() != 4)
    throw std::invalid_argument("Conv2D: the kernel must be 4-D (kh, kw, channels, filters)");
  const auto& k = kernel->shape();
  if (groups < 1 || in[2] % groups || k[3] % groups)
    throw std::invalid_argument("Conv2D: the channels (" + std::to_string(in[2]) + ") and "
                                "filters (" + std::to_string(k[3]) + ") must be divisible by "
                                "groups. Received: groups=" + std::to_string(groups));
  check_var(kernel, {k[0], k[1], in[2] / groups, k[3]}, "Conv2D", "kernel");
  if (bias) check_var(bias, {k[3]}, "Conv2D", "bias");
  const int64_t causal_pad = causal ? (k[1] - 1) * dw : 0;
  // One group's geometry (all of it when groups is 1).
  Conv2DShape s = conv2d_shape(1, in[0], in[1] + causal_pad, in[2] / groups, k[0], k[1],
                               k[3] / groups, sh, sw, dh, dw, same && !causal);
  s.w = in[1];
  s.pad_left += causal_pad;
  return add_weighted(std::make_unique<Conv2DNode>(s, groups), x, {s.oh, s.ow, k[3]},
                      {kernel, bias}, act);
}

int Graph::add_conv2d_transpose(int x, VariablePtr kernel, VariablePtr bias, int64_t sh,
                                int64_t sw, int64_t dh, int64_t dw, bool same, Act act,
                                int64_t oph, int64_t opw) {
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
  if ((oph >= 0) != (opw >= 0) || (oph >= 0 && (oph >= sh || opw >= sw)))
    throw std::invalid_argument("Conv2DTranspose: output_padding must be smaller than the "
                                "strides along each axis. Received: output_padding=(" +
                                std::to_string(oph) + ", " + std::to_string(opw) +
                                "), strides=(" + std::to_string(sh) + ", " +
                                std::to_string(sw) + ")");
  if (oph >= 0) {
    // The output length and the convolution's padding before the data along one axis:
    // Keras's arithmetic, and the left padding its JAX backend gives the dilated input
    // (k_eff - 1 - that).
    auto axis = [&](int64_t size, int64_t kk, int64_t st, int64_t d, int64_t op,
                    int64_t* len, int64_t* before) {
      const int64_t eff = kk + (kk - 1) * (d - 1);
      *len = (size - 1) * st + eff - 2 * (same ? eff / 2 : 0) + op;
      int64_t left = eff - 1;
      if (same) {
        const int64_t pad_len = eff + eff % 2 - 2 + op;
        left = std::min(pad_len / 2 + pad_len % 2, eff - 1);
      }
      *before = eff - 1 - left;
    };
    int64_t oh, ow, top, left;
    axis(in[0], k[0], sh, dh, oph, &oh, &top);
    axis(in[1], k[1], sw, dw, opw, &ow, &left);
    if (oh <= 0 || ow <= 0)
      throw std::invalid_argument("Conv2DTranspose: output_padding gives an empty output " +
                                  shape_str({oh, ow, k[2]}));
    // The convolution whose input gradient this is, its padding given outright.
    const Conv2DShape s{1,    oh,   ow,    k[2],    // n, h, w, c
                        k[0], k[1], in[2],          // kh, kw, f
                        sh,   sw,   dh,    dw,      // strides, dilation
                        top,  left, in[0], in[1]};  // padding before, output
    return add_weighted(std::make_unique<Conv2DTransposeNode>(s), x, {oh, ow, k[2]},
                        {kernel, bias}, act);
  }
  const int64_t oh = length(in[0], k[0], sh, dh), ow = length(in[1], k[1], sw, dw);
  // The convolution whose input gradient this is: input (oh, ow, filters), output in.
  const Conv2DShape s = conv2d_shape(1, oh, ow, k[2], k[0], k[1], in[2], sh, sw, dh, dw, same);
  if (s.oh != in[0] || s.ow != in[1])
    throw std::invalid_argument("Conv2DTranspose: no convolution maps " +
                                shape_str({oh, ow, k[2]}) + " to " + shape_str(in));
  return add_weighted(std::make_unique<Conv2DTransposeNode>(s), x, {oh, ow, k[2]},
                      {kernel, bias}, act);
}

int Graph::add_depthwise(int x, VariablePtr kernel, VariablePtr bias, int64_t sh, int64_t sw,
                         int64_t dh, int64_t dw, bool same, Act act) {
  const std::vector<int64_t> in = values_.at(check_value(x, "DepthwiseConv2D")).shape;
  if (in.size() != 3)
    throw std::invalid_argument("DepthwiseConv2D expects samples of shape (height, width, "
                                "channels). Received per-sample shape " + shape_str(in));
  if (!kernel || kernel->shape().size() != 4)
    throw std::invalid_argument("DepthwiseConv2D: the kernel must be 4-D (kh, kw, channels, "
                                "depth_multiplier)");
  const auto& k = kernel->shape();
  check_var(kernel, {k[0], k[1], in[2], k[3]}, "DepthwiseConv2D", "kernel");
  const int64_t f = in[2] * k[3];
  if (bias) check_var(bias, {f}, "DepthwiseConv2D", "bias");
  const Conv2DShape s = conv2d_shape(1, in[0], in[1], in[2], k[0], k[1], f, sh, sw, dh, dw, same);
  return add_weighted(std::make_unique<DepthwiseNode>(s), x, {s.oh, s.ow, f}, {kernel, bias},
                      act);
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

namespace {

std::vector<int64_t> image_shape(const std::vector<int64_t>& in, const char* who) {
  if (in.size() != 3)
    throw std::invalid_argument(std::string(who) + " expects samples of shape (height, width, "
                                "channels). Received per-sample shape " + shape_str(in));
  return in;
}

void check_size(int64_t oh, int64_t ow, const char* who) {
  if (oh <= 0 || ow <= 0)
    throw std::invalid_argument(std::string(who) + ": height and width must be positive. "
                                "Received: (" + std::to_string(oh) + ", " +
                                std::to_string(ow) + ")");
}

}  // namespace

int Graph::add_resize(int x, int64_t oh, int64_t ow, bool nearest, bool crop_to_aspect) {
  const auto in = image_shape(values_.at(check_value(x, "Resizing")).shape, "Resizing");
  check_size(oh, ow, "Resizing");
  return add_node(std::make_unique<ResizeNode>(ResizeNode::of_image(in[0], in[1], in[2], oh, ow,
                                                                   nearest, crop_to_aspect)),
                  {x}, {oh, ow, in[2]}, {});
}

int Graph::add_augment(int x, AugmentSpec spec) {
  const char* who = AugmentNode(spec).kind();
  const auto in = image_shape(values_.at(check_value(x, who)).shape, who);
  spec.h = in[0];
  spec.w = in[1];
  spec.c = in[2];
  return add_node(std::make_unique<AugmentNode>(spec), {x}, in, {});
}

int Graph::add_random(std::vector<int64_t> shape, bool normal, float a, float b,
                      uint64_t seed, uint64_t stream, bool advance, int like) {
  if (shape.empty())
    throw std::invalid_argument("A random tensor inside a model needs a per-sample shape");
  if (normal ? !(b >= 0.f) : !(b > a))
    throw std::invalid_argument(normal ? "Random normal values need stddev >= 0"
                                       : "Random uniform values need maxval > minval");
  int64_t frames = 1, batch_frames = 1;
  if (like >= 0) {
    frames = values_.at(check_value(like, "Random")).frames;
    batch_frames = values_[like].batch_frames;
  }
  const int y = add_node(std::make_unique<RandomNode>(normal, a, b, seed, stream, advance), {},
                         std::move(shape), {});
  nodes_.back()->frames = values_[y].frames = frames;
  nodes_.back()->batch_frames = values_[y].batch_frames = batch_frames;
  return y;
}

int Graph::add_mode_select(int a, int b) {
  const std::vector<int64_t> shape = values_.at(check_value(a, "ModeSelect")).shape;
  if (values_.at(check_value(b, "ModeSelect")).shape != shape)
    throw std::invalid_argument("ModeSelect: the two values' shapes differ: " +
                                shape_str(shape) + " and " + shape_str(values_[b].shape));
  return add_node(std::make_unique<ModeSelectNode>(), {a, b}, shape, {});
}

int Graph::add_random_crop(int x, int64_t oh, int64_t ow, uint64_t seed) {
  const auto in = image_shape(values_.at(check_value(x, "RandomCrop")).shape, "RandomCrop");
  check_size(oh, ow, "RandomCrop");
  return add_node(std::make_unique<RandomCropNode>(in[0], in[1], in[2], oh, ow, seed), {x},
                  {oh, ow, in[2]}, {});
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

int Graph::add_masking(int x, float mask_value) {
  const std::vector<int64_t> in = values_.at(check_value(x, "Masking")).shape;
  if (in.size() != 2)
    throw std::invalid_argument("Masking expects samples of shape (steps, features), an input "
                                "of rank 3. Received per-sample shape " + shape_str(in));
  const int ids = add_node(std::make_unique<MaskIdsNode>(mask_value), {x}, {in[0]}, {}, 0);
  const int y = add_node(std::make_unique<MaskApplyNode>(), {x, ids}, in, {}, 1);
  values_[y].mask = ids;
  return y;
}

int Graph::add_repeat(int x, int64_t times) {
  const std::vector<int64_t> in = values_.at(check_value(x, "RepeatVector")).shape;
  if (in.size() != 1)
    throw std::invalid_argument("RepeatVector expects samples of shape (features), an input "
                                "of rank 2. Received per-sample shape " + shape_str(in));
  if (times <= 0)
    throw std::invalid_argument("RepeatVector: n must be positive. Received: " +
                                std::to_string(times));
  return add_node(std::make_unique<RepeatNode>(), {x}, {times, in[0]}, {});
}

std::vector<int> Graph::add_rnn(int x, RnnSpec spec, VariablePtr kernel,
                                VariablePtr recurrent_kernel, VariablePtr bias,
                                const std::vector<int>& states) {
  static const char* names[] = {"SimpleRNN", "LSTM", "GRU"};
  const char* who = names[static_cast<int>(spec.cell)];
  const std::vector<int64_t> in = values_.at(check_value(x, who)).shape;
  if (in.size() != 2)
    throw std::invalid_argument(std::string(who) + " expects samples of shape (steps, "
                                "features), an input of rank 3. Received per-sample shape " +
                                shape_str(in));
  for (Act a : {spec.act, spec.rec_act})
    if (a != Act::Tanh && a != Act::Sigmoid && a != Act::Relu && a != Act::Linear &&
        a != Act::HardSigmoid)
      throw std::invalid_argument(std::string(who) + ": ember's recurrent cells take the "
                                  "activations tanh, sigmoid, relu, hard_sigmoid and linear. "
                                  "Received: " + act_name(a));
  if (spec.units <= 0)
    throw std::invalid_argument(std::string(who) + ": units must be positive. Received: " +
                                std::to_string(spec.units));
  if (!(spec.recurrent_dropout >= 0.f && spec.recurrent_dropout < 1.f))
    throw std::invalid_argument(std::string(who) + ": recurrent_dropout must be in [0, 1). "
                                "Received: " + std::to_string(spec.recurrent_dropout));
  if (!spec.reset_after && spec.cell != RnnCell::GRU) spec.reset_after = true;
  spec.steps = in[0];
  spec.features = in[1];
  const int64_t gu = spec.gates() * spec.units;
  check_var(kernel, {spec.features, gu}, who, "kernel");
  check_var(recurrent_kernel, {spec.units, gu}, who, "recurrent_kernel");
  if (bias) {
    const bool two = spec.cell == RnnCell::GRU && spec.reset_after;
    check_var(bias, two ? std::vector<int64_t>{2, gu} : std::vector<int64_t>{gu}, who, "bias");
  }
  std::vector<int> inputs{x};
  if (!states.empty()) {
    if (static_cast<int64_t>(states.size()) != spec.states())
      throw std::invalid_argument(std::string(who) + ": initial_state must hold " +
                                  std::to_string(spec.states()) + " tensor(s). Received: " +
                                  std::to_string(states.size()));
    for (int v : states) {
      const Value& st = values_.at(check_value(v, who));
      if (st.shape != std::vector<int64_t>{spec.units})
        throw std::invalid_argument(std::string(who) + ": each initial state must have shape "
                                    "(batch, " + std::to_string(spec.units) + "). Received "
                                    "per-sample shape " + shape_str(st.shape));
      inputs.push_back(v);
    }
    spec.initial_state = true;
  }
  const int data_inputs = static_cast<int>(inputs.size());
  const int mask = values_[x].mask;
  if (mask >= 0) {
    if (values_[mask].size != spec.steps)
      throw std::invalid_argument(std::string(who) + ": the mask covers " +
                                  std::to_string(values_[mask].size) + " steps; the input has " +
                                  std::to_string(spec.steps));
    inputs.push_back(mask);  // a side input
  }
  const int64_t main = spec.return_sequences ? spec.steps * spec.units : spec.units;
  std::vector<int64_t> out{spec.units};
  if (spec.return_sequences) out = {spec.steps, spec.units};
  if (spec.return_state) out = {main + spec.states() * spec.units};
  const int y = add_node(std::make_unique<RnnNode>(spec), inputs, out,
                         {kernel, recurrent_kernel, bias}, data_inputs);
  if (!spec.return_state) {
    if (spec.return_sequences) values_[y].mask = mask;
    return {y};
  }
  // The output and the final states, sliced out of the node's rows.
  auto slice = [&](int64_t from, std::vector<int64_t> shape) {
    std::vector<int32_t> map(static_cast<size_t>(product(shape)));
    for (size_t i = 0; i < map.size(); ++i) map[i] = static_cast<int32_t>(from + i);
    return add_gather(y, std::move(map), std::move(shape));
  };
  std::vector<int> outs{slice(0, spec.return_sequences
                                     ? std::vector<int64_t>{spec.steps, spec.units}
                                     : std::vector<int64_t>{spec.units})};
  if (spec.return_sequences) values_[outs[0]].mask = mask;
  for (int64_t k = 0; k < spec.states(); ++k)
    outs.push_back(slice(main + k * spec.units, {spec.units}));
  return outs;
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

int Graph::add_group_norm(int x, int64_t groups, VariablePtr gamma, VariablePtr beta,
                          float epsilon) {
  const std::vector<int64_t> in = values_.at(check_value(x, "GroupNormalization")).shape;
  const int64_t c = in.back();
  if (groups <= 0 || c % groups != 0)
    throw std::invalid_argument("GroupNormalization: " + std::to_string(c) +
                                " channels do not split into groups=" + std::to_string(groups));
  if (gamma) check_var(gamma, {c}, "GroupNormalization", "gamma");
  if (beta) check_var(beta, {c}, "GroupNormalization", "beta");
  if (!(epsilon > 0.f))
    throw std::invalid_argument("GroupNormalization: epsilon must be positive");
  auto node = std::make_unique<GroupNormNode>(c, groups, epsilon, gamma != nullptr,
                                              beta != nullptr);
  return add_node(std::move(node), {x}, in, {gamma, beta});
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

int Graph::add_frames(int x, bool batch) {
  const Value& v = values_.at(check_value(x, "TimeDistributed"));
  if (v.shape.size() < 2)
    throw std::invalid_argument("TimeDistributed expects samples of rank >= 2 (steps, ...). "
                                "Received per-sample shape " + shape_str(v.shape));
  if (batch && v.frames != 1)
    throw std::invalid_argument("A batch's frames must come first, outside any other");
  const int64_t frames = v.frames * v.shape[0];
  const int y = add_node(std::make_unique<ReshapeNode>(), {x},
                         std::vector<int64_t>(v.shape.begin() + 1, v.shape.end()), {});
  values_[y].frames = frames;
  values_[y].batch_frames = batch ? frames : values_[x].batch_frames;
  return y;
}

int Graph::add_unframes(int y, int x) {
  const Value& in = values_.at(check_value(x, "TimeDistributed"));
  const Value& v = values_.at(check_value(y, "TimeDistributed"));
  if (in.shape.size() < 2 || v.frames != in.frames * in.shape[0])
    throw std::invalid_argument("TimeDistributed: value " + std::to_string(y) + " was not "
                                "computed within the frames of value " + std::to_string(x));
  std::vector<int64_t> shape = v.shape;
  shape.insert(shape.begin(), in.shape[0]);
  const int64_t frames = in.frames, batch_frames = in.batch_frames;
  const int mask = in.mask;
  const int out = add_node(std::make_unique<ReshapeNode>(), {y}, std::move(shape), {});
  values_[out].frames = frames;
  values_[out].batch_frames = batch_frames;
  values_[out].mask = mask;  // Keras: the input's mask passes
  return out;
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

// ---- ember.ops ---------------------------------------------------------------------

static void check_map(const std::vector<int32_t>& map, int64_t expect_len, int64_t bound,
                      const char* who) {
  if (!map.empty() && static_cast<int64_t>(map.size()) != expect_len)
    throw std::invalid_argument(std::string(who) + ": an index map of " +
                                std::to_string(map.size()) + " entries for " +
                                std::to_string(expect_len) + " elements");
  for (int32_t e : map)
    if (e < 0 || e >= bound)
      throw std::invalid_argument(std::string(who) + ": index " + std::to_string(e) +
                                  " out of range for " + std::to_string(bound) + " elements");
}

int Graph::add_unary(int x, UnaryOp op, float a, float b) {
  const std::vector<int64_t> in = values_.at(check_value(x, "Unary")).shape;
  return add_node(std::make_unique<UnaryNode>(op, a, b), {x}, in, {});
}

int Graph::add_binary(BinaryOp op, int a, VariablePtr a_var, std::vector<int32_t> a_map, int b,
                      VariablePtr b_var, std::vector<int32_t> b_map,
                      std::vector<int64_t> out_shape) {
  if (a_var && b_var) throw std::invalid_argument("Binary: at least one side must be a value");
  const int64_t out = product(out_shape);
  std::vector<int> inputs;
  std::vector<VariablePtr> vars;
  auto side = [&](int v, const VariablePtr& var, std::vector<int32_t> map) {
    Operand o;
    if (var) {
      o.var = static_cast<int>(vars.size());
      o.size = var->size();
      vars.push_back(var);
    } else {
      check_value(v, "Binary");
      o.input = static_cast<int>(inputs.size());
      o.size = values_[v].size;
      inputs.push_back(v);
    }
    if (map.empty() && o.size != out)
      throw std::invalid_argument("Binary: an operand of " + std::to_string(o.size) +
                                  " elements needs an index map for an output of shape " +
                                  shape_str(out_shape));
    check_map(map, out, o.size, "Binary");
    o.map = std::move(map);
    return o;
  };
  Operand A = side(a, a_var, std::move(a_map));
  Operand B = side(b, b_var, std::move(b_map));
  return add_node(std::make_unique<BinaryNode>(op, std::move(A), std::move(B)), inputs,
                  std::move(out_shape), vars);
}

int Graph::add_reduce(int x, ReduceOp op, std::vector<int32_t> map, std::vector<int32_t> pos,
                      std::vector<int64_t> out_shape) {
  const int64_t in = values_.at(check_value(x, "Reduce")).size, out = product(out_shape);
  if (static_cast<int64_t>(map.size()) != in || static_cast<int64_t>(pos.size()) != in)
    throw std::invalid_argument("Reduce: the maps must have one entry per input element");
  check_map(map, in, out, "Reduce");
  std::vector<bool> hit(out, false);
  for (int32_t o : map) hit[o] = true;
  if (std::find(hit.begin(), hit.end(), false) != hit.end())
    throw std::invalid_argument("Reduce: an output element reduces no input element");
  return add_node(std::make_unique<ReduceNode>(op, std::move(map), std::move(pos), out), {x},
                  std::move(out_shape), {});
}

int Graph::add_gather(int x, std::vector<int32_t> map, std::vector<int64_t> out_shape) {
  const int64_t in = values_.at(check_value(x, "Gather")).size;
  if (static_cast<int64_t>(map.size()) != product(out_shape))
    throw std::invalid_argument("Gather: the map must have one entry per output element");
  check_map(map, product(out_shape), in, "Gather");
  return add_node(std::make_unique<GatherNode>(std::move(map)), {x}, std::move(out_shape), {});
}

void Graph::add_derived(std::shared_ptr<Graph> program, VariablePtr out) {
  if (finalized_) throw std::logic_error("Graph: cannot add nodes after the first step");
  if (!program || !out || program->num_inputs() != 1 || program->num_outputs() != 1 ||
      program->input_size(0) != 1 || program->output_size(0) != out->size())
    throw std::invalid_argument("add_derived: a program of one input (1) and one output "
                                "the size of the weight it computes");
  OutputSpec ext;
  ext.has_loss = ext.external = true;
  program->set_output_spec(0, ext);
  program->set_input_gradients({false});
  for (const VariablePtr& v : program->variables()) {
    if (std::find(vars_.begin(), vars_.end(), v) != vars_.end()) continue;
    vars_.push_back(v);
    trainable_.push_back(true);
    decay_.push_back(true);
  }
  derived_.push_back(Derived{std::move(program), std::move(out), 0});
}

void Graph::add_loss_term(int v, bool sum) {
  if (finalized_) throw std::logic_error("Graph: cannot add nodes after the first step");
  if (values_.at(check_value(v, "add_loss")).size != 1)
    throw std::invalid_argument("add_loss takes one value per sample. Received per-sample "
                                "shape " + shape_str(values_[v].shape));
  loss_terms_.push_back(LossTerm{v, sum});
}

int Graph::add_stop_gradient(int x) {
  std::vector<int64_t> shape = values_.at(check_value(x, "StopGradient")).shape;
  return add_node(std::make_unique<StopGradientNode>(), {x}, std::move(shape), {}, 0);
}

int Graph::add_variable(VariablePtr var) {
  if (!var) throw std::invalid_argument("add_variable: no variable");
  std::vector<int64_t> shape = var->shape();
  if (shape.empty()) shape = {1};
  return add_node(std::make_unique<VariableNode>(), {}, std::move(shape), {var});
}

int Graph::add_matmul(int a, int b) {
  const std::vector<int64_t> sa = values_.at(check_value(a, "MatMul")).shape;
  const std::vector<int64_t> sb = values_.at(check_value(b, "MatMul")).shape;
  if (sa.size() < 2 || sa.size() != sb.size() ||
      !std::equal(sa.begin(), sa.end() - 2, sb.begin()) || sa[sa.size() - 1] != sb[sb.size() - 2])
    throw std::invalid_argument("MatMul: cannot multiply samples of shapes " + shape_str(sa) +
                                " and " + shape_str(sb));
  const int64_t m = sa[sa.size() - 2], k = sa.back(), n = sb.back();
  std::vector<int64_t> out(sa.begin(), sa.end() - 1);
  out.push_back(n);
  const int64_t batch = product(out) / (m * n);
  return add_node(std::make_unique<MatMulNode>(batch, m, k, n), {a, b}, std::move(out), {});
}

int Graph::add_normalize(int x, VariablePtr mean, VariablePtr variance, bool invert) {
  const Value& in = values_.at(check_value(x, "Normalization"));
  if (!mean || !variance || mean->size() != variance->size() || mean->size() < 1 ||
      in.size % mean->size() != 0)
    throw std::invalid_argument("Normalization: mean and variance must have the same size, "
                                "dividing the sample's " + std::to_string(in.size));
  const std::vector<int64_t> shape = in.shape;
  return add_node(std::make_unique<NormalizeNode>(invert), {x}, shape, {mean, variance});
}

int Graph::add_activity_penalty(int x, float l1, float l2) {
  const Value& in = values_.at(check_value(x, "ActivityRegularization"));
  if (!(l1 >= 0.f) || !(l2 >= 0.f))
    throw std::invalid_argument("ActivityRegularization: l1 and l2 must be >= 0");
  const std::vector<int64_t> shape = in.shape;
  const int y = add_node(std::make_unique<ActivityPenaltyNode>(l1, l2), {x}, shape, {});
  values_[y].mask = values_[x].mask;
  return y;
}

}  // namespace ember
