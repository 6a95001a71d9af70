// graph.h: the executor. A model is lowered once into a chain of nodes over one
// parameter buffer; train_step / test_step / predict run a whole batch in C++.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>
#include "ember/activations.h"
#include "ember/buffer.h"
#include "ember/gemm.h"
#include "ember/losses.h"
#include "ember/metrics.h"
#include "ember/optimizers.h"

namespace ember {

struct StepCtx {
  float* params = nullptr;
  float* grads = nullptr;
  bool training = false;
  uint64_t step = 0;  // counter for dropout masks
  const float* input = nullptr;  // the batch's model input (token ids for masks)
};

// One layer of the chain. Sizes are per sample; activations are (n, size) rows.
class Node {
 public:
  virtual ~Node() = default;
  virtual const char* kind() const = 0;
  // Output aliases input (reshape/flatten): no buffer, no work.
  virtual bool is_view() const { return false; }
  // Output equals input outside training (dropout): inference treats it as a view.
  virtual bool identity_in_inference() const { return false; }
  bool view_in_inference() const { return is_view() || identity_in_inference(); }
  // Floats per sample the node keeps from forward for backward (dropout mask).
  virtual int64_t saved_per_sample() const { return 0; }
  // Sizes the node's own scratch for batches of up to n samples (memory plan).
  virtual void plan(int64_t /*n*/) {}
  virtual void forward(StepCtx& ctx, const float* x, float* y, int64_t n) = 0;
  // dy (n, out_size) may be overwritten. preact: dy is already the gradient at the
  // pre-activation (fused loss). dx (n, in_size) is null when no earlier node needs it.
  virtual void backward(StepCtx& ctx, const float* x, const float* y, float* dy,
                        float* dx, int64_t n, bool preact) = 0;

  std::vector<int64_t> out_shape;
  int64_t in_size = 0, out_size = 0;
  int64_t param_offset = 0, param_count = 0;  // all of the node's variables
  std::vector<int64_t> var_sizes;             // each variable, in Keras's order
  Act act = Act::Linear;  // activation at the node's output, for loss fusion
  // The next node's backward applies this node's activation derivative (a relu
  // followed by max pooling), so this node's backward skips it.
  bool act_backward_done_by_next = false;
  // This node can take over the relu backward of the node before it.
  virtual bool absorbs_relu_backward() const { return false; }
  bool relu_backward_of_prev = false;
  float* saved = nullptr;
};

struct StepResult {
  double loss_sum = 0;  // sum_i sw_i * L_i over the batch
  std::vector<double> metric_sums;
};

// A batch as the caller hands it: the whole data set and which rows to take
// (idx, n) or, when idx is null, rows [start, start + n).
struct Batch {
  const float* x = nullptr;       // (rows, input_size)
  const int32_t* labels = nullptr;  // sparse targets (rows)
  const float* y = nullptr;       // dense targets (rows, output_size)
  const float* sw = nullptr;      // sample weights (rows) or null
  const int64_t* idx = nullptr;
  int64_t start = 0;
  int64_t n = 0;
  int64_t rows = 0;  // rows in the whole arrays, for bounds checks
};

class Graph {
 public:
  explicit Graph(std::vector<int64_t> input_shape);

  // Builders; each returns the node index. Shapes are per sample.
  int add_dense(int64_t units, Act act, bool use_bias);
  // NHWC: samples (h, w, c). `same` selects Keras's 'same' padding over 'valid'.
  // causal: Keras's Conv1D 'causal' padding along the width ((kw - 1) * dw zeros
  // before, none after).
  int add_conv2d(int64_t filters, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh,
                 int64_t dw, bool same, Act act, bool use_bias, bool causal = false);
  int add_pool2d(bool max, int64_t ph, int64_t pw, int64_t sh, int64_t sw, bool same);
  // Max/average over the spatial axes of (..., c) samples; keepdims keeps them as 1s.
  // Over steps (spatial_dims 1) the pooling honours the mask of an Embedding with
  // mask_zero that reaches it through dropout/activation nodes. Max pooling right after
  // an Embedding is fused into it (no (n, steps, dim) intermediate).
  int add_global_pool(bool max, int64_t spatial_dims, bool keepdims);
  // Samples (steps,) of token ids as floats -> (steps, output_dim). Must be the first
  // node. Its gradient is sparse (only the rows a batch used).
  int add_embedding(int64_t input_dim, int64_t output_dim, bool mask_zero);
  int add_activation(Act act);
  int add_dropout(float rate, uint64_t seed);
  int add_reshape(std::vector<int64_t> shape);

  const std::vector<int64_t>& input_shape() const { return input_shape_; }
  const std::vector<int64_t>& output_shape() const;
  int64_t input_size() const { return input_size_; }
  int64_t output_size() const;
  int num_nodes() const { return static_cast<int>(nodes_.size()); }
  const Node& node(int i) const { return *nodes_.at(i); }

  float* params() { return params_.data(); }
  int64_t num_params() const { return params_.size(); }
  // Every variable of every node, in order; flags say which the optimizer updates
  // (trainable) and which it decays.
  const std::vector<VarSpan>& variables() const { return vars_; }
  void set_variable_flags(const std::vector<bool>& trainable, const std::vector<bool>& decay);

  void set_loss(Loss loss, bool from_logits, float param = 1.f);
  void set_metrics(std::vector<MetricSpec> metrics);
  void set_optimizer(const OptimizerConfig& cfg);
  Optimizer* optimizer() { return opt_.get(); }
  bool loss_is_sparse() const { return loss_sparse(loss_); }

  // forward, loss, backward, update at learning rate lr, metrics.
  StepResult train_step(const Batch& b, float lr);
  // forward (inference mode), loss, metrics.
  StepResult test_step(const Batch& b);
  // forward (inference mode) of rows of b.x into out (n, output_size).
  void predict(const Batch& b, float* out);

  // Number of times any activation buffer has been (re)allocated: steady state
  // must leave it unchanged.
  int64_t allocations() const { return allocations_; }
  // Rows the activation buffers hold (the largest batch or inference chunk run).
  int64_t planned_rows() const { return capacity_; }
  uint64_t step_counter() const { return step_; }

 private:
  int add_node(std::unique_ptr<Node> node, std::vector<int64_t> out_shape,
               std::vector<int64_t> var_sizes);
  // Ensures buffers for a batch of n; training adds gradients and saved state.
  void plan(int64_t n, bool training);
  // Rows per inference chunk for a batch of n: activations stay near kInferenceFloats
  // (a large predict or evaluate batch runs in equal chunks, not one huge plan).
  int64_t inference_rows(int64_t n) const;
  static constexpr int64_t kInferenceFloats = int64_t(1) << 22;
  void check_batch(const Batch& b, bool need_targets) const;
  const float* gather_input(const Batch& b);
  void gather_targets(const Batch& b);
  void forward(const float* x, int64_t n, bool training);
  // Inference at a few rows: runs Dense nodes from `first` as one sgemm_small_chain
  // and returns the node after them, or returns `first` when fewer than two chain.
  size_t forward_dense_chain(StepCtx& ctx, size_t first, int64_t n);
  // Every node but views and dropouts is a Dense, and they chain (at least two; all
  // but the last end in a ReLU or nothing): inference at a few rows is one
  // sgemm_small_chain and runs no OpenMP region. Found as nodes are added.
  bool dense_chain_only() const { return dense_chain_only_; }
  bool find_dense_chain_only() const;

  std::vector<int64_t> input_shape_;
  int64_t input_size_ = 0;
  std::vector<std::unique_ptr<Node>> nodes_;
  FloatBuffer params_, grads_;
  std::vector<VarSpan> vars_;

  Loss loss_ = Loss::MeanSquaredError;
  bool from_logits_ = false;
  float loss_param_ = 1.f;
  bool has_loss_ = false;
  std::vector<MetricSpec> metrics_;
  std::unique_ptr<Optimizer> opt_;

  // Memory plan, sized for the largest batch seen (training: the largest trained).
  int64_t capacity_ = 0, train_capacity_ = 0;
  int64_t allocations_ = 0;
  FloatBuffer input_;
  std::vector<FloatBuffer> act_buf_;   // owned output buffer per non-view node
  std::vector<float*> act_;            // act_[i] = input of node i; act_[N] = output
  std::vector<ChainLayer> chain_;      // forward_dense_chain's layers
  bool dense_chain_only_ = false;
  std::vector<FloatBuffer> saved_;
  FloatBuffer grad_a_, grad_b_;
  FloatBuffer y_, sw_;
  AlignedBuffer<int32_t> labels_;

  bool mask_live_ = false;  // an Embedding's mask reaches the next node

  uint64_t step_ = 0;
  std::mutex mu_;
};

}  // namespace ember
