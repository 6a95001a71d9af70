// graph.h: the executor. A model is a DAG of nodes over values (per-sample shapes),
// built once from the layers; its variables belong to the layers. train_step /
// test_step / predict run a whole batch in C++ and allocate nothing in steady state.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>
#include "ember/activations.h"
#include "ember/buffer.h"
#include "ember/losses.h"
#include "ember/metrics.h"
#include "ember/nodes.h"
#include "ember/optimizers.h"
#include "ember/variable.h"

namespace ember {

struct StepResult {
  double loss_sum = 0;  // sum over outputs of loss_weight * sum_i sw_i * L_i
  std::vector<double> output_loss_sums;  // per output, sum_i sw_i * L_i
  std::vector<double> metric_sums;       // each output's metrics, outputs in order
};

// A batch as the caller hands it: whole arrays (one per model input, one target per
// output) and which rows to take (idx, n) or, when idx is null, rows [start, start + n).
struct Batch {
  std::vector<const float*> x;          // per input: (rows, input size)
  std::vector<const int32_t*> labels;   // per output: sparse targets (rows) or null
  std::vector<const float*> y;          // per output: dense targets (rows, size) or null
  const float* sw = nullptr;            // sample weights (rows) or null
  const int64_t* idx = nullptr;
  int64_t start = 0;
  int64_t n = 0;
  int64_t rows = 0;  // rows in the whole arrays, for bounds checks
};

// A per-sample shape as Python writes it: (3, 4), (5,).
std::string shape_str(const std::vector<int64_t>& s);

// What an output is trained and judged with.
struct OutputSpec {
  bool has_loss = false;
  // The gradient at this output is given (the batch's dense targets) rather than
  // computed from a loss: gradient taping (tape_backward).
  bool external = false;
  Loss loss = Loss::MeanSquaredError;
  bool from_logits = false;
  float param = 1.f, param2 = 0.f;  // the loss's parameters (losses.h)
  float weight = 1.f;
  // The loss is one value for the whole batch (Keras's Dice and Tversky with
  // axis=None), weighted by the batch's total sample weight.
  bool whole_batch = false;
  std::vector<MetricSpec> metrics;
  // One loss (and metric) term per position of the last axis's rows (a class per time
  // step), averaged over the rows, as Keras does for outputs of more than one axis; an
  // output carrying a mask weights each row by it (Keras: the mean over the unmasked
  // rows). Without it, an output's whole sample is one row.
  bool per_position = false;
  // Keras's ignore_class (sparse targets): rows labelled with it take no part in the
  // loss or the metrics, which average over the others.
  bool ignore = false;
  int32_t ignore_class = 0;
};

class Graph {
 public:
  Graph() = default;

  // Builders: each takes value ids and returns the id of the value it makes. Shapes
  // are per sample. Nothing can be added after the first step.
  int add_input(std::vector<int64_t> shape);
  // Dense on the last axis. kernel (in, units), bias (units) or null.
  int add_dense(int x, VariablePtr kernel, VariablePtr bias, Act act);
  // NHWC (h, w, c) samples; kernel (kh, kw, c, filters). causal: Keras's Conv1D
  // 'causal' padding along the width ((kw - 1) * dw zeros before, none after).
  // groups: Keras's grouped convolution, kernel (kh, kw, channels / groups, filters).
  int add_conv2d(int x, VariablePtr kernel, VariablePtr bias, int64_t sh, int64_t sw,
                 int64_t dh, int64_t dw, bool same, Act act, bool causal = false,
                 int64_t groups = 1);
  // Keras's Conv2DTranspose: kernel (kh, kw, filters, channels); the output size is
  // in * stride ('same') or in * stride + max(k_eff - stride, 0) ('valid'); with an
  // output padding (oph, opw >= 0; -1: none) (in - 1) * stride + k_eff - 2 pad + op,
  // pad = k_eff / 2 ('same') or 0, as Keras (and its JAX backend's padding) computes it.
  int add_conv2d_transpose(int x, VariablePtr kernel, VariablePtr bias, int64_t sh, int64_t sw,
                           int64_t dh, int64_t dw, bool same, Act act, int64_t oph = -1,
                           int64_t opw = -1);
  // Nearest-neighbour upsampling of (h, w, c) samples by (sh, sw).
  int add_upsample(int x, int64_t sh, int64_t sw);
  // Keras's Resizing of (h, w, c) samples to (oh, ow, c), bilinear or nearest; with
  // crop_to_aspect from the largest centred window of the output's aspect ratio.
  int add_resize(int x, int64_t oh, int64_t ow, bool nearest, bool crop_to_aspect);
  // A random image layer (spec.h, w, c are taken from x); the identity at inference.
  int add_augment(int x, AugmentSpec spec);
  // Random values of a per-sample shape for every row (see RandomNode): normal (a: mean,
  // b: stddev) or uniform in [a, b). like >= 0: drawn for every frame of that value's
  // samples (a draw inside TimeDistributed or a traced step's model call).
  int add_random(std::vector<int64_t> shape, bool normal, float a, float b, uint64_t seed,
                 uint64_t stream, bool advance, int like = -1);
  // a in training mode, b otherwise (values of one shape; see ModeSelectNode).
  int add_mode_select(int a, int b);
  // Keras's RandomCrop to (oh, ow).
  int add_random_crop(int x, int64_t oh, int64_t ow, uint64_t seed);
  // Zero padding (all >= 0) or cropping (all <= 0) of (h, w, c) samples: top, bottom,
  // left and right rows/columns added (negative: removed).
  int add_pad_crop(int x, int64_t top, int64_t bottom, int64_t left, int64_t right);
  // Keras's DepthwiseConv2D: kernel (kh, kw, channels, depth_multiplier).
  int add_depthwise(int x, VariablePtr kernel, VariablePtr bias, int64_t sh, int64_t sw,
                    int64_t dh, int64_t dw, bool same, Act act);
  int add_pool2d(int x, bool max, int64_t ph, int64_t pw, int64_t sh, int64_t sw, bool same);
  // Max/average over the spatial axes of (..., c) samples; keepdims keeps them as 1s.
  // Over steps (spatial_dims 1) it honours the mask that x carries. Masks come from an
  // Embedding with mask_zero and pass through Dense, Activation, Dropout and the merges,
  // as in Keras; other nodes drop them.
  int add_global_pool(int x, bool max, int64_t spatial_dims, bool keepdims);
  // Samples (steps,) of token ids as floats -> (steps, dim); table (input_dim, dim).
  // With mask_zero the output carries the mask (ids equal to 0).
  int add_embedding(int ids, VariablePtr table, bool mask_zero);
  // Keras's Masking: x with the steps whose features all equal mask_value zeroed, and
  // masked there (samples of (steps, features)).
  int add_masking(int x, float mask_value);
  // Keras's RepeatVector: (features) samples repeated into (times, features).
  int add_repeat(int x, int64_t times);
  // A recurrent layer (spec.steps and spec.features are taken from x); the output
  // keeps x's mask when it returns sequences. states: the initial states (h, and LSTM's
  // c; (units) each) or none for zeros. Returns the output, then with
  // spec.return_state the final states.
  std::vector<int> add_rnn(int x, RnnSpec spec, VariablePtr kernel, VariablePtr recurrent_kernel,
                           VariablePtr bias, const std::vector<int>& states = {});
  // alpha: elu's alpha or leaky_relu's negative_slope (kDefaultAlpha: Keras's default).
  int add_activation(int x, Act act, float alpha = kDefaultAlpha);
  // Dropout and the other noise layers (NoiseKind); rate is GaussianNoise's stddev.
  int add_dropout(int x, float rate, uint64_t seed, NoiseKind kind = NoiseKind::Dropout);
  // Over the last axis: gamma, beta (c) or null; moving mean and variance (c).
  int add_batch_norm(int x, VariablePtr gamma, VariablePtr beta, VariablePtr moving_mean,
                     VariablePtr moving_variance, float epsilon, float momentum);
  // Keras's activity regularization of x (see ActivityPenaltyNode).
  int add_activity_penalty(int x, float l1, float l2);
  // Keras's Normalization: mean and variance (c), c dividing the sample's size, over
  // its trailing c elements.
  int add_normalize(int x, VariablePtr mean, VariablePtr variance, bool invert);
  // Over the last axis: gamma, beta (c) or null.
  int add_layer_norm(int x, VariablePtr gamma, VariablePtr beta, float epsilon);
  // Channels (the last axis) in `groups` groups; gamma, beta (c) or null.
  int add_group_norm(int x, int64_t groups, VariablePtr gamma, VariablePtr beta, float epsilon);
  int add_reshape(int x, std::vector<int64_t> shape);
  // Keras's TimeDistributed. add_frames: samples of x (steps, ...) become steps samples
  // of (...) each, as far as the nodes added on the value it returns (and on theirs)
  // see: they run on every frame of every sample in one call. add_unframes: a value y
  // computed so from add_frames(x) back to samples of (steps, ...), with x's mask.
  // With batch, the steps are the rows of a batch (a traced train_step calling a model
  // on a whole batch held as one sample): BatchNormalization takes its statistics over
  // all of them, as over a batch.
  int add_frames(int x, bool batch = false);
  int add_unframes(int y, int x);
  // Out axis i = in axis perm[i] (per-sample axes, from 0).
  int add_permute(int x, std::vector<int64_t> perm);
  // alpha: the sample's rank, each dimension the sample's or 1 (shared).
  int add_prelu(int x, VariablePtr alpha);
  int add_merge(MergeOp op, const std::vector<int>& xs);
  // Along `axis` of the per-sample shapes (0 is the first axis after the batch).
  int add_concatenate(const std::vector<int>& xs, int64_t axis);
  int add_dot(int a, int b, bool normalize);
  // ember.ops. Maps are per sample (see op nodes in nodes.h); each checks that its
  // entries index what they read.
  int add_unary(int x, UnaryOp op, float a, float b);
  // a and b: a value id (a_var / b_var null) or a variable, read through their maps
  // into the output's per-sample shape; at least one side is a value.
  int add_binary(BinaryOp op, int a, VariablePtr a_var, std::vector<int32_t> a_map, int b,
                 VariablePtr b_var, std::vector<int32_t> b_map, std::vector<int64_t> out_shape);
  int add_reduce(int x, ReduceOp op, std::vector<int32_t> map, std::vector<int32_t> pos,
                 std::vector<int64_t> out_shape);
  int add_gather(int x, std::vector<int32_t> map, std::vector<int64_t> out_shape);
  // x, through which no gradient flows.
  int add_stop_gradient(int x);
  // A weight computed from other weights (ops on weights alone in a custom layer's
  // call): `program`, a graph of one input of shape (1) and one output the size of
  // `out` over variables only, fills `out` before every forward; nodes read `out` as a
  // weight. In training the gradient `out` gathers goes back through the program to
  // its variables (which join this graph's), and the optimizer never updates `out`.
  void add_derived(std::shared_ptr<Graph> program, VariablePtr out);
  // A variable as a value: each sample is the whole variable (of shape (1) for a
  // scalar); its gradient is the sum over the rows.
  int add_variable(VariablePtr var);
  // Samples (..., m, k) and (..., k, n) with the same leading axes -> (..., m, n).
  int add_matmul(int a, int b);
  // Keras's add_loss inside a layer's call: value v (one float per sample, or per frame)
  // joins the batch's loss as its mean over the rows, or with sum its sum; its gradient
  // is seeded at v.
  void add_loss_term(int v, bool sum);
  // The model's outputs, in order (each a distinct value).
  void set_outputs(const std::vector<int>& values);
  // Runs node `value`'s producer in inference mode inside training steps too.
  void set_inference_only(int value, bool on);
  // Stateful recurrent nodes of the layer `key` (0: all) start their next batch from
  // zeros. Returns how many were reset.
  int reset_rnn_states(uint64_t key);

  int num_inputs() const { return static_cast<int>(inputs_.size()); }
  int num_outputs() const { return static_cast<int>(outputs_.size()); }
  int num_values() const { return static_cast<int>(values_.size()); }
  const std::vector<int64_t>& value_shape(int v) const;
  const std::vector<int64_t>& input_shape(int i) const { return value_shape(inputs_.at(i)); }
  const std::vector<int64_t>& output_shape(int o) const { return value_shape(outputs_.at(o)); }
  int64_t input_size(int i) const { return values_.at(inputs_.at(i)).size; }
  int64_t output_size(int o) const { return values_.at(outputs_.at(o)).size; }
  int num_nodes() const { return static_cast<int>(nodes_.size()); }
  const Node& node(int i) const { return *nodes_.at(i); }

  // Every distinct variable, in the order nodes first use them; flags say which the
  // optimizer updates (trainable: read when the model is compiled) and decays.
  const std::vector<VariablePtr>& variables() const { return vars_; }
  void set_variable_flags(const std::vector<bool>& trainable, const std::vector<bool>& decay);
  // Keras's kernel/bias regularizers per variable (0, 0: none): their penalty joins the
  // loss of every training and evaluation step, and its gradient the trainable
  // variables' gradients.
  void set_variable_penalties(const std::vector<float>& l1, const std::vector<float>& l2);
  // Keras's kernel/bias constraints per variable, applied after each update.
  void set_variable_constraints(const std::vector<Constraint>& constraints);

  void set_output_spec(int o, const OutputSpec& spec);
  void set_optimizer(std::shared_ptr<Optimizer> opt);
  Optimizer* optimizer() { return opt_.get(); }
  bool output_is_sparse(int o) const;
  bool output_has_loss(int o) const { return specs_.at(o).has_loss; }
  bool output_has_mask(int o) const { return values_.at(outputs_.at(o)).mask >= 0; }
  // The rows of output o a loss and metrics see per sample, and their width.
  int64_t output_rows(int o) const;
  int64_t output_columns(int o) const { return output_size(o) / output_rows(o); }
  // The regularizers' penalty at the current weights, adding its gradient to the
  // trainable variables' gradients when `grads`.
  double penalty(bool grads);
  // The activity penalties of the last forward (summed over its rows).
  double activity_penalty() const;
  // The add_loss terms of the last forward over n samples of a batch of `batch`: batch
  // times their share of the batch's loss (as loss_sum counts it), from these samples.
  double loss_terms(int64_t n, int64_t batch) const;

  // forward, losses, backward, update at learning rate lr, metrics.
  StepResult train_step(const Batch& b, float lr);
  // forward (inference mode), losses, metrics.
  StepResult test_step(const Batch& b);
  // forward (inference mode) of rows of b.x into out[o] (n, output_size(o)) per output.
  void predict(const Batch& b, const std::vector<float*>& out);

  // Gradient taping (ember.GradientTape). tape_forward runs the training plan with the
  // nodes in training mode or not, dropout drawn at `step`, and writes the outputs;
  // it returns a token naming that forward. tape_backward runs the backward from the
  // gradients b.y gives at the outputs (every output's spec external), re-running the
  // forward unless `token` is still the last one, and writes each wanted input's
  // gradient into dx[i] (null: not wanted) and each variable's into
  // variable_gradient(k). No variable changes.
  uint64_t tape_forward(const Batch& b, bool training, uint64_t step,
                        const std::vector<float*>& out);
  void tape_backward(const Batch& b, bool training, uint64_t step, uint64_t token,
                     const std::vector<float*>& dx);
  // The gradient of variable k from the last tape_backward (null if none was taken).
  const FloatBuffer* variable_gradient(int k) const;
  // Output o of the last training step's forward: (rows of that step, output_size(o)),
  // valid until the next step or forward of this graph.
  const float* trained_output(int o) const;
  int64_t trained_rows() const { return trained_rows_; }
  // Which inputs take a gradient in tape_backward (set before the first step).
  void set_input_gradients(const std::vector<bool>& wanted);

  // Number of times any buffer has been (re)allocated: steady state leaves it unchanged.
  int64_t allocations() const { return allocations_; }
  // Rows the activation buffers hold (the largest batch or inference chunk run).
  int64_t planned_rows() const { return capacity_; }
  // Floats per sample of the activation buffers inference uses (liveness: a buffer is
  // reused once its last reader has run), and of those training keeps.
  int64_t inference_floats_per_sample() const;
  int64_t training_floats_per_sample() const;
  uint64_t step_counter() const { return step_; }
  // Descriptions of the fusions applied, for tests and inspection.
  std::vector<std::string> fusions() const;

 private:
  struct Value {
    std::vector<int64_t> shape;
    int64_t size = 0;
    int producer = -1;  // node index, or -1 for a model input
    std::vector<int> readers;  // nodes reading it, in order
    int mask = -1;  // the token-id value whose zeros mask this one, or -1
    int64_t frames = 1;  // TimeDistributed: shapes per frame, frames per sample (add_frames)
    int64_t batch_frames = 1;  // of which batch rows (add_frames with batch)
    int64_t floats() const { return size * frames; }  // per sample
  };
  int add_node(std::unique_ptr<Node> node, const std::vector<int>& inputs,
               std::vector<int64_t> out_shape, std::vector<VariablePtr> vars,
               int data_inputs = -1);
  int check_value(int v, const char* who) const;
  int add_weighted(std::unique_ptr<Node> node, int x, std::vector<int64_t> out_shape,
                   std::vector<VariablePtr> vars, Act act, bool pass_mask = false);
  int merged_mask(const std::vector<int>& xs, const char* who, bool all_needed) const;
  void finalize();
  void fuse_embedding_max_pool();
  void fuse_bias_into_dense();
  void fuse_activation_into_producer();
  int producer_through_views(int v) const;
  void fuse_relu_into_pool();
  void fold_batchnorm();
  void find_dense_chains();
  void plan_inference_buffers();
  bool only_reader(int v, int node) const;
  void plan(int64_t n, bool training);
  void plan_training();
  int64_t inference_rows(int64_t n) const;
  void check_batch(const Batch& b, bool need_targets) const;
  void gather_inputs(const Batch& b);
  void forward(int64_t n, bool training);
  void tape_run_forward(const Batch& b, bool training, uint64_t step);
  bool input_wants_grad(int v) const;
  float* buffer_of(int v, bool training);
  // Runs backward over the nodes; dry: only counts the gradient buffers it needs.
  int run_backward(int64_t n, bool dry, StepResult* r);
  bool fused_loss(int o) const;
  size_t var_index(const Variable* v) const;
  void gather_targets(const Batch& b);
  // The weight of each of output o's n * rows rows (sample weight times mask and
  // ignore_class; the sample weights themselves, or null, when nothing is left out or
  // split), the count its loss is averaged over, and in *counted 1 for each row that
  // counts (null: all).
  const float* row_weights(int o, int64_t n, double* count, const float** counted = nullptr);
  // Output o's loss over the batch: its weighted sum over rows (the gradient, scaled,
  // into grad unless null); *count as row_weights.
  double output_loss(int o, int64_t n, float* grad, double* count);
  // Each output's metric sums; a per-position output's followed by its denominators:
  // the rows counted (masked rows out) and their total weight.
  void add_metrics(StepResult& r, int64_t n);
  static constexpr int64_t kInferenceFloats = int64_t(1) << 22;

  std::vector<Value> values_;
  std::vector<int> inputs_, outputs_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<VariablePtr> vars_;
  std::vector<bool> trainable_, decay_;
  std::vector<float> l1_, l2_;
  std::vector<Constraint> constraints_;
  std::vector<OutputSpec> specs_;
  struct LossTerm { int value; bool sum; };
  std::vector<LossTerm> loss_terms_;
  struct Derived {
    std::shared_ptr<Graph> program;
    VariablePtr out;
    uint64_t token = 0;  // the program's forward of this step
  };
  std::vector<Derived> derived_;
  float derived_x_ = 0.f;  // the programs' one input
  bool is_derived(const Variable* v) const;
  Batch derived_batch(const float* dy = nullptr) const;
  void derived_forward(bool training);
  // The programs' backward: each derived weight's gradient into its sources'.
  void derived_backward(bool training);
  std::shared_ptr<Optimizer> opt_;
  bool finalized_ = false;

  // Fusions (finalize): dense chains at batch 1, and the loss fused into the output
  // activation per output.
  struct Chain { int first = 0, last = 0; std::vector<int> dense; };
  std::vector<Chain> chains_;
  std::vector<int> chain_at_;  // chain index starting at node i, or -1
  bool dense_chain_only_ = false;
  std::vector<ChainLayer> chain_layers_;
  std::vector<std::string> fusions_;

  // Memory plan. Each non-view value has a buffer; inference maps values onto the
  // buffers of values no longer read (infer_home_), training keeps each its own.
  std::vector<int> infer_home_;        // per value: the value whose buffer it uses
  std::vector<int64_t> buf_floats_;    // per value: floats per sample of its buffer
  std::vector<FloatBuffer> bufs_;      // per value (unused for inputs and views)
  std::vector<int64_t> buf_rows_;      // rows each buffer holds
  std::vector<FloatBuffer> input_bufs_;
  std::vector<const float*> val_;      // this step's pointer to each value
  std::vector<const float*> node_in_;  // scratch: a node's input pointers
  std::vector<float*> node_dx_;
  int64_t capacity_ = 0, train_capacity_ = 0, input_capacity_ = 0, infer_capacity_ = 0;
  int64_t allocations_ = 0;
  bool training_planned_ = false;  // the training plan matches the variable flags

  // Training: gradients per variable (trainable only), extra ones for a variable's
  // second and later uses in this graph, node scratch, and a pool of value gradients.
  std::vector<FloatBuffer> var_grads_;
  std::vector<std::vector<FloatBuffer>> use_grads_;  // per node, per variable use
  std::vector<FloatBuffer> saved_;
  std::vector<FloatBuffer> grad_pool_;
  int64_t grad_width_ = 0;
  std::vector<bool> needs_grad_;  // per value
  std::vector<OptVar> opt_vars_;
  std::vector<FloatBuffer> y_;  // per output: gathered dense targets
  std::vector<AlignedBuffer<int32_t>> labels_;
  FloatBuffer sw_;
  std::vector<FloatBuffer> row_w_;  // per output: the rows' weights
  std::vector<FloatBuffer> row_m_;  // per output: the rows that count (mask, ignore_class)
  std::vector<FloatBuffer> kept_;   // per output: 0 where a label is ignore_class, else 1
  // The gradient sums a shared variable needs, and the tables to zero each step.
  struct GradSum { float* dst; const float* src; int64_t size; };
  std::vector<GradSum> grad_sums_;
  std::vector<int> zeroed_grads_;
  // This step's targets, and run_backward's state, sized once.
  std::vector<const int32_t*> labels_ptr_;
  std::vector<const float*> y_ptr_;
  const float* sw_ptr_ = nullptr;
  std::vector<int> gbuf_, pool_free_, pool_refs_;
  std::vector<bool> preact_;   // per node: its loss gradient arrives at the pre-activation
  std::vector<Act> loss_act_;  // per output: the activation its loss is fused with
  std::vector<int> grown_;
  std::vector<std::pair<int, int>> pending_adds_;

  uint64_t step_ = 0;
  int64_t trained_rows_ = 0;  // rows of the last train_step
  bool nodes_training_ = true;  // false: a tape forward with the nodes in inference mode
  bool replaying_ = false;      // tape_backward re-running a forward
  std::vector<bool> input_grads_;  // per input: tape_backward computes its gradient
  uint64_t forwards_ = 0;          // forwards run, naming each tape_forward
  std::mutex mu_;
};

}  // namespace ember
