// nodes.h: the executor's nodes. A node reads one or more values (per-sample shapes
// known when it is added) and writes one; the Graph plans the buffers, runs the nodes
// in topological order and sums gradients where a value fans out.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>
#include "ember/activations.h"
#include "ember/buffer.h"
#include "ember/conv2d.h"
#include "ember/embedding.h"
#include "ember/gemm.h"
#include "ember/pooling.h"
#include "ember/variable.h"

namespace ember {

struct StepCtx {
  bool training = false;  // this node's mode (a node may run in inference mode in training)
  uint64_t step = 0;      // counter for dropout masks
  // The forward is run again for a backward (gradient taping): state it updates (the
  // moving statistics) has moved already.
  bool replay = false;
  // The inference plan runs, where a folded BatchNormalization is a view and its
  // producer applies it (a tape's forward outside training runs the training plan).
  bool inference_plan = false;
};

// A variable as one node uses it; grad is null when the variable is frozen (no
// gradient work) or outside training. Backward writes the gradient, it does not add.
struct VarUse {
  Variable* var = nullptr;
  float* grad = nullptr;
};

class Node {
 public:
  virtual ~Node() = default;
  virtual const char* kind() const = 0;
  // Output aliases input 0 (reshape/flatten): no buffer, no work.
  virtual bool is_view() const { return false; }
  // Output equals input 0 outside training (dropout): inference treats it as a view.
  virtual bool identity_in_inference() const { return false; }
  bool view_in_inference() const { return is_view() || identity_in_inference(); }
  // Floats per sample the node keeps from forward for backward (dropout mask, argmax).
  virtual int64_t saved_per_sample() const { return 0; }
  // Sizes the node's own scratch for training batches of up to n samples.
  virtual void plan(int64_t /*n*/) {}
  // Sizes the scratch that inference needs (most nodes need none); true if it grew.
  virtual bool plan_inference(int64_t /*n*/) { return false; }
  // x[i]: (n, in_sizes[i]) for each input; y: (n, out_size).
  virtual void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) = 0;
  // dy (n, out_size) may be overwritten. dx[i] is null where input i needs no gradient.
  // preact: dy is already the gradient at the pre-activation (fused loss).
  virtual void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                        float* const* dx, int64_t n, bool preact) = 0;
  // This node can take over the relu backward of the node producing its input.
  virtual bool absorbs_relu_backward() const { return false; }
  // The activity penalty of the last forward, summed over its rows (the batch's mean
  // loss gains it divided by the batch size).
  virtual double penalty() const { return 0.0; }

  std::vector<int> inputs;  // value ids: the data inputs, then side inputs (mask ids)
  int data_inputs = 1;      // the inputs that take gradients
  int output = -1;
  std::vector<int64_t> out_shape;
  int64_t out_size = 0;
  std::vector<int64_t> in_sizes;
  std::vector<VarUse> vars;  // Keras's order (kernel, bias)
  Act act = Act::Linear;     // activation at the output, for loss fusion
  float alpha = kDefaultAlpha;  // the activation's parameter (elu, leaky_relu)
  // The next node's backward applies this node's activation derivative (a relu read
  // only by max pooling), so this node's backward skips it.
  bool act_backward_done_by_next = false;
  bool relu_backward_of_prev = false;
  bool inference_only = false;  // the per-node training flag: false runs as in training
  // Keras's TimeDistributed: each sample of this node's values holds `frames` of the
  // per-sample shapes above (in_sizes, out_shape), and the graph runs the node on
  // n * frames rows, every frame of every sample alike.
  int64_t frames = 1;
  // Of those frames, how many are rows of one batch rather than steps (a model called
  // inside a traced train_step, where a whole batch is one sample): `steps` frames
  // each keep statistics of their own (BatchNormalization), batch frames do not.
  int64_t batch_frames = 1;
  int64_t steps() const { return frames / batch_frames; }
  // Floats per sample of the node's output (its frames included).
  int64_t out_floats() const { return out_size * frames; }
  float* saved = nullptr;
};

class BatchNormNode;

// kernel (k, units) then bias (units). A sample of shape (..., k) is rows() rows of k.
class DenseNode : public Node {
 public:
  const char* kind() const override { return "Dense"; }
  int64_t rows() const { return out_size / out_shape.back(); }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;
  // The same product as a layer of sgemm_small_chain writing y (1-D samples only), at
  // inference (with the folded BatchNormalization's transform).
  ChainLayer chain_layer(float* y);
  // A BatchNormalization over this node's c units can be folded in.
  bool can_fold(int64_t c) const { return out_shape.back() == c && act == Act::Linear; }
  // The BatchNormalization folded in (see BatchNormNode::fold), or null.
  BatchNormNode* folded_bn = nullptr;
  // The activation at this node's output outside training (the folded one's).
  Act inference_act() const;

 private:
  // The inference epilogue: the bias, then a folded BatchNormalization's scale, shift
  // and relu.
  Epilogue inference_epilogue();
  FloatBuffer bn_factors_;
};

// An activation of the last axis (softmax normalises each row of it).
class ActivationNode : public Node {
 public:
  const char* kind() const override { return "Activation"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;
};

// The layers that add noise in training and are the identity at inference, each drawn
// from (seed, step, index) so the bits do not depend on the thread count:
//   Dropout: y = x m, m = 1 / (1 - rate) with probability 1 - rate, else 0;
//   Spatial: the same with one m per (sample, channel), shared by every position;
//   GaussianDropout: y = x m, m ~ N(1, rate / (1 - rate));
//   GaussianNoise: y = x + e, e ~ N(0, rate^2) (rate is the stddev).
enum class NoiseKind { Dropout, Spatial, GaussianDropout, GaussianNoise };

class DropoutNode : public Node {
 public:
  DropoutNode(NoiseKind kind, float rate, uint64_t seed, int64_t channels)
      : kind_(kind), rate_(rate), seed_(seed), channels_(channels) {}
  const char* kind() const override;
  int64_t saved_per_sample() const override {
    return kind_ == NoiseKind::GaussianNoise ? 0 : out_size;
  }
  bool identity_in_inference() const override { return true; }
  void plan(int64_t n) override;
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  NoiseKind kind_;
  float rate_;
  uint64_t seed_;
  int64_t channels_;
  bool active_ = false;
  FloatBuffer per_channel_;  // Spatial: one draw per (sample, channel)
};

// ember.random.normal / uniform inside a traced call (a VAE's sampling layer): values
// of the node's per-sample shape for every row, from Philox keyed by (seed, stream +
// call), where call counts the forwards when `advance` (a SeedGenerator: new values
// each call) and stays 0 otherwise (an integer seed: the same values each call). A
// tape's replayed forward draws the values it drew before. No inputs, no gradient.
class RandomNode : public Node {
 public:
  RandomNode(bool normal, float a, float b, uint64_t seed, uint64_t stream, bool advance)
      : normal_(normal), a_(a), b_(b), seed_(seed), stream_(stream), advance_(advance) {}
  const char* kind() const override { return normal_ ? "RandomNormal" : "RandomUniform"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx&, const float* const*, const float*, float*, float* const*,
                int64_t, bool) override {}

 private:
  bool normal_;
  float a_, b_;  // mean and stddev, or the bounds
  uint64_t seed_, stream_;
  bool advance_;
  uint64_t calls_ = 0;
};

// A traced call that reads its `training` argument: input 0 (its training trace) in
// training mode, input 1 (its inference trace) otherwise; the gradient goes to the one
// picked (the other's is zero).
class ModeSelectNode : public Node {
 public:
  const char* kind() const override { return "ModeSelect"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  bool trained_ = false;
};

class ReshapeNode : public Node {
 public:
  const char* kind() const override { return "Reshape"; }
  bool is_view() const override { return true; }
  void forward(const StepCtx&, const float* const*, float*, int64_t) override {}
  void backward(const StepCtx&, const float* const*, const float*, float*, float* const*,
                int64_t, bool) override {}
};

// kernel (kh, kw, c, f) then bias (f); `shape` is the geometry of one image. With
// groups > 1 (Keras's groups) `shape` is one group's (c and f per group) and the kernel
// is (kh, kw, c, groups f): group g maps channels [g c, (g + 1) c) to filters
// [g f, (g + 1) f) as a plain convolution of its gathered channels, its kernel columns
// and outputs gathered into scratch and scattered back.
class Conv2DNode : public Node {
 public:
  explicit Conv2DNode(const Conv2DShape& shape, int64_t groups = 1)
      : shape_(shape), groups_(groups) {}
  const char* kind() const override { return "Conv2D"; }
  void plan(int64_t n) override;
  bool plan_inference(int64_t n) override;
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;
  // A BatchNormalization over this node's c output channels can be folded in.
  bool can_fold(int64_t c) const { return groups_ == 1 && shape_.f == c && act == Act::Linear; }
  // The BatchNormalization folded in (see BatchNormNode::fold), or null.
  BatchNormNode* folded_bn = nullptr;

 private:
  Conv2DShape shape_;
  int64_t groups_;
  FloatBuffer bn_factors_;
  // Groups: one group's input, output, kernel, and in backward their gradients.
  FloatBuffer xg_, yg_, wg_, dxg_, dwg_;
};

// The transpose of a convolution (Keras's Conv2DTranspose): its forward is the input
// gradient of the convolution `shape_` describes, whose input is this node's output
// (h, w, filters) and whose output is this node's input (oh, ow, channels); kernel
// (kh, kw, filters, channels) then bias (filters).
class Conv2DTransposeNode : public Node {
 public:
  explicit Conv2DTransposeNode(const Conv2DShape& shape) : shape_(shape) {}
  const char* kind() const override { return "Conv2DTranspose"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  Conv2DShape shape_;
};

// Nearest-neighbour upsampling of (h, w, c) samples by (sh, sw).
class UpsampleNode : public Node {
 public:
  UpsampleNode(int64_t h, int64_t w, int64_t c, int64_t sh, int64_t sw)
      : h_(h), w_(w), c_(c), sh_(sh), sw_(sw) {}
  const char* kind() const override { return "UpSampling2D"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  int64_t h_, w_, c_, sh_, sw_;
};

// Zero padding (oy, ox >= 0) or cropping (oy, ox <= 0) of (h, w, c) samples to
// (oh, ow, c): out[i, j] = in[i - oy, j - ox].
class ShiftWindowNode : public Node {
 public:
  ShiftWindowNode(int64_t h, int64_t w, int64_t oh, int64_t ow, int64_t c, int64_t oy,
                  int64_t ox)
      : h_(h), w_(w), oh_(oh), ow_(ow), c_(c), oy_(oy), ox_(ox) {}
  const char* kind() const override { return oy_ >= 0 && ox_ >= 0 ? "ZeroPadding" : "Cropping"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  int64_t h_, w_, oh_, ow_, c_, oy_, ox_;
};

// Resizing of (h, w, c) samples to (oh, ow, c), read from the window (top, left, wh,
// ww) of each image: bilinear (half-pixel centres, the edge pixels extended: Keras's
// image.resize without antialiasing) or nearest. Backward scatters each output's
// gradient onto the pixels it read, image by image.
class ResizeNode : public Node {
 public:
  ResizeNode(int64_t h, int64_t w, int64_t c, int64_t oh, int64_t ow, int64_t top,
             int64_t left, int64_t wh, int64_t ww, bool nearest);
  // The whole image, or with crop_to_aspect the largest centred window of oh:ow's
  // aspect ratio (Keras's smart_resize).
  static ResizeNode of_image(int64_t h, int64_t w, int64_t c, int64_t oh, int64_t ow,
                             bool nearest, bool crop_to_aspect);
  const char* kind() const override { return "Resizing"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;
  // One image: x (h, w, c) -> y (oh, ow, c); dx (+)= the adjoint of dy.
  void resize_one(const float* x, float* y) const;
  void adjoint_one(const float* dy, float* dx) const;

 private:
  struct Tap {
    int64_t lo, hi;
    float frac;  // the weight of hi
  };
  // f(output offset, the offsets of the four input pixels it reads, their weights)
  // for each output pixel of one image.
  template <class F>
  void each_pixel(F f) const;
  int64_t h_, w_, c_, oh_, ow_;
  std::vector<Tap> rows_, cols_;
};

// Keras's random image layers, active in training and the identity at inference. Each
// image draws its own parameters from (seed, step, image), so the bits do not depend on
// the thread count. Flip: both axes the mode names, or none (Keras 3 flips both
// together), each with probability 1/2. Rotation, Zoom, Translation: an affine map of
// output to input pixel coordinates, sampled bilinearly (or nearest) with Keras's fill
// modes. Contrast: (x - channel mean) f + channel mean, clipped to [lo, hi].
enum class AugmentKind { Flip, Rotation, Zoom, Translation, Contrast };
enum class FillMode { Reflect, Wrap, Constant, Nearest };

struct AugmentSpec {
  AugmentKind kind = AugmentKind::Flip;
  int64_t h = 0, w = 0, c = 0;
  bool horizontal = true, vertical = true;  // Flip
  // Rotation: angle in [a0, a1] turns; Zoom: 1 + [a0, a1] vertically and 1 + [b0, b1]
  // horizontally (b_same: one draw for both); Translation: [a0, a1] of the height and
  // [b0, b1] of the width; Contrast: f in [a0, a1].
  float a0 = 0.f, a1 = 0.f, b0 = 0.f, b1 = 0.f;
  bool b_same = false;
  FillMode fill = FillMode::Reflect;
  float fill_value = 0.f;
  bool nearest = false;
  float lo = 0.f, hi = 255.f;  // Contrast's value range
  uint64_t seed = 0;
};

class AugmentNode : public Node {
 public:
  explicit AugmentNode(const AugmentSpec& spec) : s_(spec) {}
  const char* kind() const override;
  // Flip: the flag; Contrast: the factor; affine kinds: the map (6 floats).
  int64_t saved_per_sample() const override;
  bool identity_in_inference() const override { return true; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  AugmentSpec s_;
  bool active_ = false;
};

// Keras's RandomCrop: in training a random (oh, ow) window of each image (when the
// image is larger both ways; its corner drawn from (seed, step, image)); otherwise, and
// at inference, as Keras documents it: the largest centred window of the output's
// aspect ratio resized to (oh, ow) (Keras's smart_resize).
class RandomCropNode : public Node {
 public:
  RandomCropNode(int64_t h, int64_t w, int64_t c, int64_t oh, int64_t ow, uint64_t seed);
  const char* kind() const override { return "RandomCrop"; }
  int64_t saved_per_sample() const override { return 2; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  int64_t h_, w_, c_, oh_, ow_;
  uint64_t seed_;
  ResizeNode resize_;
  bool cropped_ = false;  // the last forward cut random windows
};

// Keras's Masking, in two nodes. MaskIdsNode: per step of (steps, features) samples, 1
// where some feature differs from mask_value, else 0 (a value that masks like token
// ids; no gradient). MaskApplyNode: x with the masked steps zeroed (inputs x, ids).
class MaskIdsNode : public Node {
 public:
  explicit MaskIdsNode(float mask_value) : value_(mask_value) {}
  const char* kind() const override { return "MaskIds"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx&, const float* const*, const float*, float*, float* const*,
                int64_t, bool) override {}

 private:
  float value_;
};

class MaskApplyNode : public Node {
 public:
  const char* kind() const override { return "Masking"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;
};

// Keras's RepeatVector: a (features) sample repeated `times` times, (times, features).
class RepeatNode : public Node {
 public:
  const char* kind() const override { return "RepeatVector"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;
};

// Keras's Permute: out axis i is in axis perm[i] of each sample.
class PermuteNode : public Node {
 public:
  PermuteNode(std::vector<int64_t> in_shape, std::vector<int64_t> perm);
  const char* kind() const override { return "Permute"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  // dst[i] = src[offset(i)] over one sample, offsets from the output's multi-index.
  void gather(const float* src, float* dst, int64_t n, const std::vector<int64_t>& dims,
              const std::vector<int64_t>& src_strides) const;
  std::vector<int64_t> in_shape_, out_shape_, perm_;
  std::vector<int64_t> fwd_strides_, bwd_strides_;
};

// Keras's PReLU: y = x (x > 0) or alpha x, alpha (the sample's shape, 1 on shared axes)
// broadcast over the shared axes.
class PReLUNode : public Node {
 public:
  PReLUNode(std::vector<int64_t> shape, std::vector<int64_t> alpha_shape);
  const char* kind() const override { return "PReLU"; }
  void plan(int64_t n) override;
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  int64_t alpha_index(int64_t i) const;  // element i of a sample -> alpha's index
  std::vector<int64_t> shape_, alpha_strides_;
  FloatBuffer partial_;  // per-block sums of the alpha gradient
};

// Keras's DepthwiseConv2D: kernel (kh, kw, c, depth_multiplier) then bias (c * dm);
// shape_.f = c * dm.
class DepthwiseNode : public Node {
 public:
  explicit DepthwiseNode(const Conv2DShape& shape) : shape_(shape) {}
  const char* kind() const override { return "DepthwiseConv2D"; }
  void plan(int64_t n) override;
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  Conv2DShape shape_;
  FloatBuffer scratch_;
};

// Max or average pooling; max keeps the argmax of each output for backward.
class Pool2DNode : public Node {
 public:
  Pool2DNode(const Pool2DShape& shape, bool max) : shape_(shape), max_(max) {}
  const char* kind() const override { return max_ ? "MaxPooling2D" : "AveragePooling2D"; }
  int64_t saved_per_sample() const override { return max_ ? out_size : 0; }
  bool absorbs_relu_backward() const override { return max_; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  int32_t* argmax() { return reinterpret_cast<int32_t*>(saved); }
  Pool2DShape shape_;
  bool max_;
};

// Global max/average over every position of a (..., c) sample: (hw, c) -> (c). With a
// second input (token ids, the mask travelling from an Embedding with mask_zero),
// steps whose id is 0 are left out.
class GlobalPoolNode : public Node {
 public:
  GlobalPoolNode(bool max, int64_t spatial_dims) : max_(max), spatial_dims_(spatial_dims) {}
  const char* kind() const override { return max_ ? "GlobalMaxPooling" : "GlobalAveragePooling"; }
  bool max() const { return max_; }
  int64_t spatial_dims() const { return spatial_dims_; }
  int64_t saved_per_sample() const override { return max_ ? out_size : 0; }
  bool absorbs_relu_backward() const override { return max_; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  int32_t* argmax() { return reinterpret_cast<int32_t*>(saved); }
  bool max_;
  int64_t spatial_dims_;
};

// Token ids (steps,) as floats -> (steps, dim) rows of the table (input_dim, dim). The
// gradient is sparse (the rows the batch used), handed to the optimizer as `sparse`;
// when the table is shared by several nodes of one graph, `dense_grad` instead
// receives every use's rows (the graph zeroes it). Fused with a following global max
// pooling it outputs (dim) per sample and keeps the winning step of each output.
class EmbeddingNode : public Node {
 public:
  EmbeddingNode(int64_t input_dim, int64_t output_dim, int64_t steps, bool mask_zero);
  const char* kind() const override { return "Embedding"; }
  int64_t saved_per_sample() const override { return fused_ ? dim_ : 0; }
  void fuse_max_pool();
  bool fused() const { return fused_; }
  bool mask_zero() const { return mask_zero_; }
  void plan(int64_t n) override;
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;
  SparseRows sparse;
  bool dense_grad = false;

 private:
  int32_t* argmax() { return reinterpret_cast<int32_t*>(saved); }
  int64_t vocab_, dim_, steps_;
  bool mask_zero_, fused_ = false;
  AlignedBuffer<int32_t> slot_, rows_, order_;
  AlignedBuffer<int64_t> offsets_;
  FloatBuffer values_;
};

// Batch normalization over the last axis (c channels). vars: gamma and beta when the
// layer has them (scale, center), then moving_mean and moving_variance, which the
// training forward updates in place. In inference mode (or inference_only) it uses the
// moving statistics, in training mode the batch's.
class BatchNormNode : public Node {
 public:
  BatchNormNode(int64_t c, float eps, float momentum, bool scale, bool center);
  const char* kind() const override { return "BatchNormalization"; }
  void plan(int64_t n) override;
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;
  // Folded into the convolution or Dense producing its input: outside training that
  // node applies this one's transform (and relu) in its GEMM's epilogue, and this one is
  // a view.
  bool identity_in_inference() const override { return folded_; }
  void fold() { folded_ = true; }
  int64_t channels() const { return c_; }
  // The inference transform as x * scale + shift (c floats each).
  void infer_factors(float* scale, float* shift);

 private:
  VarUse* gamma() { return scale_ ? &vars[0] : nullptr; }
  VarUse* beta() { return center_ ? &vars[scale_ ? 1 : 0] : nullptr; }
  float* moving_mean() { return vars[vars.size() - 2].var->data(); }
  float* moving_var() { return vars[vars.size() - 1].var->data(); }
  // Training inside TimeDistributed: Keras 3 calls the layer once per step, so each
  // step's rows (gathered into scratch) take their own batch statistics, and the
  // moving ones move once per step, in step order.
  void forward_per_frame(const float* x, float* y, int64_t n, bool replay);
  void backward_per_frame(const float* x, float* dy, float* dx, int64_t n);
  int64_t c_;
  float eps_, momentum_;
  bool scale_, center_, trained_ = false, folded_ = false;
  FloatBuffer mean_, inv_std_, work_;
  FloatBuffer xf_, yf_, dxf_, grads_;  // per frame: gathered rows, gradient partials
  AlignedBuffer<double> scratch_;
};

// Layer normalization over the last axis (c values per row). vars: gamma and beta when
// the layer has them. Training keeps each row's mean and inverse deviation.
class LayerNormNode : public Node {
 public:
  LayerNormNode(int64_t c, float eps, bool scale, bool center)
      : c_(c), eps_(eps), scale_(scale), center_(center) {}
  const char* kind() const override { return "LayerNormalization"; }
  int64_t saved_per_sample() const override { return 2 * (out_size / c_); }
  void plan(int64_t n) override;
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  int64_t c_;
  float eps_;
  bool scale_, center_;
  AlignedBuffer<double> scratch_;
};

// Group normalization: (p positions, c channels) samples, channels in `groups` groups.
// vars: gamma and beta when the layer has them. Training keeps each group's statistics.
class GroupNormNode : public Node {
 public:
  GroupNormNode(int64_t c, int64_t groups, float eps, bool scale, bool center)
      : c_(c), groups_(groups), eps_(eps), scale_(scale), center_(center) {}
  const char* kind() const override { return "GroupNormalization"; }
  int64_t saved_per_sample() const override { return 2 * groups_; }
  void plan(int64_t n) override;
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  int64_t c_, groups_;
  float eps_;
  bool scale_, center_;
  AlignedBuffer<double> scratch_;
};

// Element-wise merges of inputs of one shape (Keras's Add, Subtract, Multiply, Average,
// Maximum, Minimum).
enum class MergeOp { Add, Subtract, Multiply, Average, Maximum, Minimum };

class MergeNode : public Node {
 public:
  explicit MergeNode(MergeOp op) : op_(op) {}
  const char* kind() const override;
  // A relu after the node can move into it: the sum of two or more inputs, then relu,
  // in one pass (a residual block's output).
  bool takes_relu() const { return op_ == MergeOp::Add && inputs.size() >= 2; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  MergeOp op_;
};

// Concatenation along one axis of the per-sample shapes: each sample is `outer` runs
// of in_sizes[i] / outer values from each input in turn.
class ConcatenateNode : public Node {
 public:
  explicit ConcatenateNode(int64_t outer) : outer_(outer) {}
  const char* kind() const override { return "Concatenate"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  int64_t outer_;
};

// Keras's Dot of two (d,) samples: (1,) = <a, b>, or the cosine with normalize
// (each side divided by sqrt(max(sum x^2, 1e-12)), as l2_normalize).
class DotNode : public Node {
 public:
  explicit DotNode(bool normalize) : normalize_(normalize) {}
  const char* kind() const override { return "Dot"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  bool normalize_;
};

// The recurrent layers (Keras's SimpleRNN, LSTM, and GRU with reset_after=True) over
// samples of (steps, features). vars: kernel (features, g units), recurrent_kernel
// (units, g units), then the bias when there is one: (g units), or for GRU (2, g units),
// the input bias then the recurrent bias. Gates in Keras's order: LSTM i, f, c, o; GRU
// z, r, h. inputs: x, then, when masked, the token ids whose zeros mask steps: a masked
// step carries the state (h, and c) through unchanged and outputs it, or zeros with
// zero_output_for_mask (as Bidirectional sets it when returning sequences).
enum class RnnCell { Simple, LSTM, GRU };

struct RnnSpec {
  RnnCell cell = RnnCell::LSTM;
  int64_t steps = 0, features = 0, units = 0;
  Act act = Act::Tanh, rec_act = Act::Sigmoid;
  bool return_sequences = false;
  bool go_backwards = false;          // read the steps last to first
  bool reverse_output = false;        // sequences in input order (Bidirectional's backward)
  bool zero_output_for_mask = false;
  // Keras's recurrent_dropout: in training, the state entering h W_rec is multiplied by
  // one mask per (sample, unit) for the whole sequence, drawn from (seed, step).
  float recurrent_dropout = 0.f;
  uint64_t seed = 0;
  // Keras's initial_state: the node reads the first state (h, and LSTM's c) from data
  // inputs after x instead of starting from zeros, and passes them gradients.
  bool initial_state = false;
  // Keras's return_state: the final states (h, and LSTM's c) follow the output in each
  // sample's row (the builder slices them into values of their own).
  bool return_state = false;
  // GRU only: Keras's reset_after (the reset gate scales h W_rec_h + its bias); false
  // applies it to the state before the product: h~ = act(x W_h + (r h) W_rec_h + b_h).
  bool reset_after = true;
  // Keras's stateful: each batch starts from the final states of the batch before (row i
  // from row i), kept in the node from one forward to the next, training or not; the
  // first batch (and the first after reset_state) starts from zeros. Every batch must
  // have as many rows as the first. state_key names the layer for resets.
  bool stateful = false;
  uint64_t state_key = 0;
  int64_t gates() const { return cell == RnnCell::LSTM ? 4 : cell == RnnCell::GRU ? 3 : 1; }
  int64_t states() const { return cell == RnnCell::LSTM ? 2 : 1; }
};

// Forward: x W (+ input bias) and per step h W_rec as GEMMs (large batches project
// step by step too: see stepwise), then the gate arithmetic. Backward through
// time keeps, per sample: the state h after every step (and before the first), LSTM's
// cell state c likewise, the gates after their activations, and GRU's recurrent
// candidate term (h W_rec_h + its bias with reset_after, else r h); it recomputes
// nothing else. The recurrent kernel's gradient sums the steps last to first, the input
// side's gradients likewise or as single products over all steps (stepwise), in fixed
// orders, so the bits do not depend on the thread count.
class RnnNode : public Node {
 public:
  explicit RnnNode(const RnnSpec& spec) : s_(spec) {}
  const char* kind() const override;
  int64_t saved_per_sample() const override;
  void plan(int64_t n) override;
  bool plan_inference(int64_t n) override;
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;
  const RnnSpec& spec() const { return s_; }
  // Stateful: the next batch starts from zeros.
  void reset_state() { state_rows_ = -1; }

 private:
  bool stepwise(int64_t n) const;
  void plan_xw(int64_t n, bool inference);
  RnnSpec s_;
  FloatBuffer state_[2];     // stateful: h (and LSTM's c) after the last batch, (rows, U)
  int64_t state_rows_ = -1;  // their rows; -1: none yet (zeros)
  FloatBuffer xw_, rec_, hbuf_, cbuf_, gbuf_, rhbuf_, dh_, dc_, drec_, dbias_, tmp_;
  FloatBuffer rmask_, hm_;  // recurrent dropout: the mask, the masked state
  bool rdrop_ = false;      // the last forward dropped (so backward does)
};

// The nodes of ember.ops (traced custom layers). Index maps are per sample: they say,
// for each output element, which element of an operand it reads (broadcasting, slices,
// transposes, tiles and takes are all such maps), computed once in Python.

enum class UnaryOp {
  Affine,  // a x + b
  Exp, Log, Sqrt, Square, Abs, Sign, Clip /* to [a, b] */, Pow /* x^a */,
  RDiv /* a / x */, Floor, Round, Trunc, Log1p, Expm1, Sin, Cos
};

// y = op(x), element by element; ops without a derivative (sign, floor, round, trunc)
// pass no gradient.
class UnaryNode : public Node {
 public:
  UnaryNode(UnaryOp op, float a, float b) : op_(op), a_(a), b_(b) {}
  const char* kind() const override { return "Unary"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  UnaryOp op_;
  float a_, b_;
};

enum class BinaryOp {
  Add, Subtract, Multiply, Divide, Power, Maximum, Minimum,
  // 1 or 0, no gradient:
  Greater, GreaterEqual, Less, LessEqual, Equal, NotEqual
};

// One side of a BinaryNode: a value of the graph (input index) or a variable (index
// into vars), read through `map` (empty: element e of the output reads element e).
struct Operand {
  int input = -1;
  int var = -1;
  std::vector<int32_t> map;
  int64_t size = 0;  // floats per sample (value) or in all (variable)
};

// y = a op b with NumPy broadcasting. Ties of maximum and minimum share the gradient
// equally, as JAX does. A variable's gradient sums over the batch in blocks of samples
// of a fixed size, then the blocks in order: the same bits for any thread count.
class BinaryNode : public Node {
 public:
  BinaryNode(BinaryOp op, Operand a, Operand b) : op_(op), a_(std::move(a)), b_(std::move(b)) {}
  const char* kind() const override { return "Binary"; }
  void plan(int64_t n) override;
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;
  BinaryOp op() const { return op_; }
  const Operand& operand(int i) const { return i == 0 ? a_ : b_; }

 private:
  // The gradient of side `s` at output element e of sample i.
  float grad_of(int s, float a, float b, float y, float g) const;
  BinaryOp op_;
  Operand a_, b_;
  FloatBuffer partial_;  // per block of samples: a variable side's gradient
};

enum class ReduceOp { Sum, Mean, Max, Min, ArgMax, ArgMin };

// Reduction of each sample over some of its axes: input element e joins output element
// map[e] (pos[e]: its position among the elements reduced together, for arg ops), in
// the order of e. Max and Min share the gradient equally among ties, as JAX does.
class ReduceNode : public Node {
 public:
  ReduceNode(ReduceOp op, std::vector<int32_t> map, std::vector<int32_t> pos,
             int64_t out_size);
  const char* kind() const override { return "Reduce"; }
  void plan(int64_t n) override;
  bool plan_inference(int64_t n) override;
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  ReduceOp op_;
  std::vector<int32_t> map_, pos_;
  std::vector<float> count_;  // elements per output
  // Per sample and output: the extremes (arg ops' forward), the ties (Max and Min's
  // backward).
  FloatBuffer scratch_;
};

// y[e] = x[map[e]] within each sample (slices, transposes, tiles, takes, broadcasts);
// the backward adds each output's gradient into the element it read.
class GatherNode : public Node {
 public:
  explicit GatherNode(std::vector<int32_t> map) : map_(std::move(map)) {}
  const char* kind() const override { return "Gather"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  std::vector<int32_t> map_;
};

// Per sample, `batch` products of (m, k) by (k, n) matrices, both operands values.
class MatMulNode : public Node {
 public:
  MatMulNode(int64_t batch, int64_t m, int64_t k, int64_t n)
      : batch_(batch), m_(m), k_(k), n_(n) {}
  const char* kind() const override { return "MatMul"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  int64_t batch_, m_, k_, n_;
};

// y = x with no gradient to x (Keras's ops.stop_gradient).
class StopGradientNode : public Node {
 public:
  const char* kind() const override { return "StopGradient"; }
  void forward(const StepCtx&, const float* const* x, float* y, int64_t n) override {
    std::copy_n(x[0], n * out_size, y);
  }
  void backward(const StepCtx&, const float* const*, const float*, float*, float* const*,
                int64_t, bool) override {}
};

// A variable read as a value (a traced train_step's ops on weights, the program of a
// derived weight): every row is the variable; its gradient sums the rows' gradients in
// row order.
class VariableNode : public Node {
 public:
  const char* kind() const override { return "Variable"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;
};

// Keras's Normalization: y = (x - mean) / max(sqrt(variance), 1e-7), or with invert
// y = mean + x max(sqrt(variance), 1e-7); mean and variance (c) broadcast over the
// trailing c elements of each sample, read at every step (adapt() or a load changes
// them without rebuilding).
class NormalizeNode : public Node {
 public:
  explicit NormalizeNode(bool invert) : invert_(invert) {}
  const char* kind() const override { return "Normalization"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;

 private:
  bool invert_;
};

// Keras's activity regularization: y = x, and the penalty (l1 sum |x| + l2 sum x^2) / n
// over a batch of n joins the batch's mean loss (its gradient joins dx), in training and
// evaluation alike. Summed per sample, then over the samples in order.
class ActivityPenaltyNode : public Node {
 public:
  ActivityPenaltyNode(float l1, float l2) : l1_(l1), l2_(l2) {}
  const char* kind() const override { return "ActivityRegularization"; }
  void forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) override;
  void backward(const StepCtx& ctx, const float* const* x, const float* y, float* dy,
                float* const* dx, int64_t n, bool preact) override;
  double penalty() const override { return penalty_; }

 private:
  float l1_, l2_;
  double penalty_ = 0;  // of the last forward: l1 sum |x| + l2 sum x^2, not divided by n
};

}  // namespace ember
