// graph.cpp: the executor: configuration, the memory plan, forward and backward over
// the DAG, and the three step functions. The builders are in graph_build.cpp, the
// fusion passes and the inference plan in graph_passes.cpp, the nodes in src/nodes/.
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

// n times the batch's loss, a weighted sum over rows averaged over count of them (the
// sum itself where count is n: one row per sample, no mask).
double batch_loss_sum(double sum, int64_t n, double count) {
  return count == static_cast<double>(n) ? sum : sum * static_cast<double>(n) / count;
}

// Rows [s, s + m) of the batch b.
Batch sub_batch(const Batch& b, int64_t s, int64_t m) {
  Batch c = b;
  if (c.idx) c.idx += s; else c.start += s;
  c.n = m;
  return c;
}

}  // namespace

// -- configuration ------------------------------------------------------------------

void Graph::set_outputs(const std::vector<int>& values) {
  if (finalized_) throw std::logic_error("Graph: cannot change outputs after the first step");
  if (values.empty()) throw std::invalid_argument("Graph: a model needs at least one output");
  for (size_t i = 0; i < values.size(); ++i) {
    check_value(values[i], "set_outputs");
    if (values_[values[i]].frames != 1)
      throw std::invalid_argument("Graph: an output cannot lie inside a TimeDistributed layer");
    for (size_t j = 0; j < i; ++j)
      if (values[j] == values[i])
        throw std::invalid_argument("Graph: the same tensor is listed twice as an output");
  }
  outputs_ = values;
  specs_.assign(values.size(), OutputSpec{});
}

int Graph::reset_rnn_states(uint64_t key) {
  std::lock_guard<std::mutex> lock(mu_);
  int count = 0;
  for (auto& node : nodes_)
    if (auto* rnn = dynamic_cast<RnnNode*>(node.get()))
      if (rnn->spec().stateful && (key == 0 || rnn->spec().state_key == key)) {
        rnn->reset_state();
        ++count;
      }
  return count;
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
  const Value& out = values_[outputs_[o]];
  const bool judged = spec.has_loss || !spec.metrics.empty();
  if (spec.per_position && out.shape.size() < 2)
    throw std::invalid_argument("Output " + std::to_string(o) + ": a loss per position needs "
                                "samples of more than one axis. Received per-sample shape " +
                                shape_str(out.shape));
  if (judged && out.mask >= 0) {
    const int64_t rows = out.size / out.shape.back();
    if (!spec.per_position || values_[out.mask].size != rows)
      throw std::invalid_argument(
          "Output " + std::to_string(o) + " of per-sample shape " + shape_str(out.shape) +
          " carries a mask of " + std::to_string(values_[out.mask].size) + " steps, which "
          "does not weigh its rows: pool the steps first (e.g. GlobalAveragePooling1D)");
  }
  if (!(spec.weight >= 0.f))
    throw std::invalid_argument("loss_weights must be non-negative. Received: " +
                                std::to_string(spec.weight));
  std::lock_guard<std::mutex> lock(mu_);  // waits for a step running in another thread
  specs_[o] = spec;
  training_planned_ = false;
}

int64_t Graph::output_rows(int o) const {
  const Value& out = values_.at(outputs_.at(o));
  return specs_.at(o).per_position ? out.size / out.shape.back() : 1;
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

void Graph::finalize() {
  if (finalized_) return;
  if (outputs_.empty()) throw std::logic_error("Graph: set_outputs was never called");
  fuse_embedding_max_pool();
  fuse_bias_into_dense();
  fuse_activation_into_producer();
  fuse_relu_into_pool();
  fold_batchnorm();
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
  row_w_.resize(outputs_.size());
  row_m_.resize(outputs_.size());
  kept_.resize(outputs_.size());
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
    if (!node->is_view()) s += node->out_floats();
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
  if (!training && n > infer_capacity_) {
    for (auto& node : nodes_) grew |= node->plan_inference(n * node->frames);
    infer_capacity_ = n;
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
  for (int v = 0; v < V; ++v) needs[v] = input_wants_grad(v);
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
  for (const LossTerm& t : loss_terms_) reach[t.value] = true;
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
  // A derived weight's sources take its gradient (added after the nodes' backward;
  // zeroed each step when no node writes them first).
  std::vector<int> derived_only;
  for (const Derived& d : derived_) {
    const size_t o = var_index(d.out.get());
    std::vector<bool> flags;
    for (const VariablePtr& v : d.program->variables())
      flags.push_back(trainable_[var_index(v.get())]);
    d.program->set_variable_flags(flags, std::vector<bool>(flags.size(), false));
    if (!trainable_[o] || uses[o] == 0) continue;
    for (const VariablePtr& v : d.program->variables()) {
      const size_t k = var_index(v.get());
      if (!trainable_[k]) continue;
      if (uses[k] == 0) derived_only.push_back(static_cast<int>(k));
      ++uses[k];
    }
  }
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
      saved[i].resize(rows_times(n, nodes_[i]->frames * nodes_[i]->saved_per_sample()));
  for (auto& node : nodes_) node->plan(n * node->frames);
  std::vector<OptVar> opt_vars;
  if (opt_) {
    for (size_t k = 0; k < vars_.size(); ++k) {
      if (!trainable_[k] || uses[k] == 0 || is_derived(vars_[k].get())) continue;
      OptVar ov;
      ov.var = vars_[k].get();
      ov.decay = decay_[k];
      ov.slots = &opt_->slots_for(vars_[k]);
      opt_vars.push_back(ov);
    }
  }
  const int64_t widest = [&] {
    int64_t w = 1;
    for (const Value& v : values_) w = std::max(w, v.floats());
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
  for (int k : derived_only)
    if (std::find(zeroed_grads_.begin(), zeroed_grads_.end(), k) == zeroed_grads_.end())
      zeroed_grads_.push_back(k);
  for (OptVar& ov : opt_vars) {
    const size_t k = var_index(ov.var);
    ov.grad = var_grads_[k].data();
    for (const auto& node : nodes_) {
      auto* emb = dynamic_cast<EmbeddingNode*>(node.get());
      if (emb && emb->vars[0].var == ov.var && !emb->dense_grad) ov.sparse = &emb->sparse;
    }
  }
  opt_vars_ = std::move(opt_vars);
  // Which outputs fuse their loss into the activation producing them (the loss then
  // takes that activation, and the producer's backward starts at the pre-activation).
  loss_act_.assign(outputs_.size(), Act::Linear);
  preact_.assign(nodes_.size(), false);
  for (size_t o = 0; o < outputs_.size(); ++o) {
    if (!fused_loss(static_cast<int>(o))) continue;
    int p = values_[outputs_[o]].producer;
    while (nodes_[p]->is_view()) p = values_[nodes_[p]->inputs[0]].producer;
    loss_act_[o] = nodes_[p]->act;
    preact_[p] = true;
  }
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

bool Graph::is_derived(const Variable* v) const {
  for (const Derived& d : derived_)
    if (d.out.get() == v) return true;
  return false;
}

Batch Graph::derived_batch(const float* dy) const {
  Batch b;
  b.x = {&derived_x_};
  b.y = {dy};
  b.labels = {nullptr};
  b.rows = b.n = 1;
  return b;
}

void Graph::derived_forward(bool training) {
  for (Derived& d : derived_) {
    float* out = d.out->data();
    d.token = d.program->tape_forward(derived_batch(), training, step_, {out});
  }
}

void Graph::derived_backward(bool training) {
  for (Derived& d : derived_) {
    const size_t o = var_index(d.out.get());
    if (!trainable_[o] || var_grads_[o].size() == 0) continue;
    d.program->tape_backward(derived_batch(var_grads_[o].data()), training, step_, d.token,
                             {nullptr});
    const auto& sources = d.program->variables();
    for (size_t j = 0; j < sources.size(); ++j) {
      const FloatBuffer* g = d.program->variable_gradient(static_cast<int>(j));
      const size_t k = var_index(sources[j].get());
      if (g && var_grads_[k].size()) add_into(var_grads_[k].data(), g->data(), g->size());
    }
  }
}

void Graph::forward(int64_t n, bool training) {
  ++forwards_;
  if (!derived_.empty()) derived_forward(training && nodes_training_);
  StepCtx ctx{training, step_};
  ctx.replay = replaying_;
  ctx.inference_plan = !training;
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
        chain_layers_.push_back(static_cast<DenseNode&>(*nodes_[d])
                                    .chain_layer(buffer_of(nodes_[d]->output, false)));
      // When the chain is the whole model no OpenMP region runs around it, so it may
      // use the helper threads.
      sgemm_small_chain(n, val_[node.inputs[0]], chain_layers_.data(),
                        static_cast<int64_t>(chain_layers_.size()), dense_chain_only_);
      for (int k = c.first; k <= c.last; ++k) {
        const Node& m = *nodes_[k];
        val_[m.output] = m.view_in_inference() ? val_[m.inputs[0]] : buffer_of(m.output, false);
      }
      const auto& last = static_cast<const DenseNode&>(*nodes_[c.last]);
      const Act act = last.inference_act();
      if (act != Act::Linear && act != Act::Relu) {
        float* y = buffer_of(last.output, false);
        act_forward(act, y, y, n, last.out_size);
      }
      i = c.last;
      continue;
    }
    ctx.training = training && nodes_training_ && !node.inference_only;
    for (size_t j = 0; j < node.inputs.size(); ++j) node_in_[j] = val_[node.inputs[j]];
    float* y = buffer_of(out, training);
    node.forward(ctx, node_in_.data(), y, n * node.frames);
    val_[out] = y;
  }
}

bool Graph::fused_loss(int o) const {
  const OutputSpec& s = specs_[o];
  int v = outputs_[o];
  if (!s.has_loss || s.external || !values_[v].readers.empty()) return false;
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
  for (size_t o = 0; o < outputs_.size(); ++o) {
    const OutputSpec& s = specs_[o];
    if (!s.has_loss) continue;
    const int v = outputs_[o];
    const bool wanted = values_[v].producer >= 0 && needs_grad_[v];
    if (wanted) gbuf_[v] = alloc();
    if (dry) continue;
    const int64_t c = values_[v].size;
    if (s.external) {
      if (wanted) std::memcpy(pool(gbuf_[v]), y_ptr_[o], sizeof(float) * n * c);
      continue;
    }
    double count;
    const double sum = output_loss(static_cast<int>(o), n, wanted ? pool(gbuf_[v]) : nullptr,
                                   &count);
    // The batch's loss (the weighted sum over the count), n times: what Python divides.
    r->output_loss_sums[o] = batch_loss_sum(sum, n, count);
    r->loss_sum += s.weight * r->output_loss_sums[o];
  }

  // The add_loss terms' gradients: 1 / rows per row of a mean over the batch, 1 of a
  // sum.
  for (const LossTerm& t : loss_terms_) {
    const int v = t.value;
    if (values_[v].producer < 0 || !needs_grad_[v]) continue;
    const bool fresh = gbuf_[v] < 0;
    if (fresh) gbuf_[v] = alloc();
    if (dry) continue;
    const int64_t rows = n * values_[v].frames;
    const float seed =
        t.sum ? 1.f : static_cast<float>(1.0 / static_cast<double>(rows));
    float* g = pool(gbuf_[v]);
    for (int64_t i = 0; i < rows; ++i) g[i] = fresh ? seed : g[i] + seed;
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
      return j < node.data_inputs && needs_grad_[u] &&
             (values_[u].producer >= 0 || input_wants_grad(u));
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
          add_into(pool(gbuf_[in]), pool(b), n * values_[in].floats());
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
      node.backward(ctx, node_in_.data(), val_[out], pool(b), node_dx_.data(), n * node.frames,
                    preact_[i]);
    }
    for (const auto& [s, u] : adds) {
      if (!dry) add_into(pool(gbuf_[u]), pool(s), n * values_[u].floats());
      drop(s);
    }
    drop(b);
  }
  return count;
}

void Graph::gather_targets(const Batch& b) {
  for (size_t o = 0; o < outputs_.size(); ++o) {
    const int64_t c = values_[outputs_[o]].size;
    const int64_t rows = output_rows(static_cast<int>(o));
    labels_[o].resize(rows_times(b.n, rows));
    labels_ptr_[o] = rows_of(o < b.labels.size() ? b.labels[o] : nullptr, rows, b,
                             labels_[o].data());
    if (specs_[o].ignore && labels_ptr_[o]) {  // ignored labels: class 0, weight 0
      const int64_t m = b.n * rows;
      const int32_t* src = labels_ptr_[o];
      int32_t* dst = labels_[o].data();
      kept_[o].resize(m);
      for (int64_t i = 0; i < m; ++i) {
        const bool keep = src[i] != specs_[o].ignore_class;
        kept_[o][i] = keep ? 1.f : 0.f;
        dst[i] = keep ? src[i] : 0;
      }
      labels_ptr_[o] = dst;
    }
    y_ptr_[o] = rows_of(o < b.y.size() ? b.y[o] : nullptr, c, b, y_[o].data());
  }
  sw_ptr_ = rows_of(b.sw, int64_t(1), b, sw_.data());
}

const float* Graph::row_weights(int o, int64_t n, double* count, const float** counted) {
  const int64_t rows = output_rows(o);
  const int mask = values_[outputs_[o]].mask;
  const float* m = mask >= 0 ? val_[mask] : nullptr;
  const float* kept = specs_[o].ignore && labels_ptr_[o] ? kept_[o].data() : nullptr;
  if (counted) *counted = nullptr;
  if (rows == 1 && !m && !kept) {
    *count = static_cast<double>(n);
    return sw_ptr_;
  }
  FloatBuffer& w = row_w_[o];
  FloatBuffer& on = row_m_[o];
  w.resize(rows_times(n, rows));
  on.resize(rows_times(n, rows));
  int64_t valid = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < rows; ++t) {
      const int64_t r = i * rows + t;
      const bool counts = (!m || m[r] != 0.f) && (!kept || kept[r] != 0.f);
      valid += counts;
      on[r] = counts ? 1.f : 0.f;
      w[r] = counts ? (sw_ptr_ ? sw_ptr_[i] : 1.f) : 0.f;
    }
  if (counted && (m || kept)) *counted = on.data();
  // Keras: the mean over the rows that count (none: a loss of 0).
  *count = static_cast<double>(m || kept ? std::max<int64_t>(valid, 1) : n * rows);
  return w.data();
}

double Graph::output_loss(int o, int64_t n, float* grad, double* count) {
  const OutputSpec& s = specs_[o];
  const int v = outputs_[o];
  const int64_t rows = output_rows(o), c = values_[v].size / rows;
  const float* w = row_weights(o, n, count);
  int64_t groups = n * rows, width = c;
  float total_weight;
  if (s.whole_batch) {  // one row of every element, weighted by the rows' total weight
    double sum = 0;
    for (int64_t i = 0; i < groups; ++i) sum += w ? w[i] : 1.f;
    total_weight = static_cast<float>(sum);
    w = &total_weight;
    width *= groups;
    groups = 1;
  }
  if (grad)
    return loss_forward_backward<float>(s.loss, s.from_logits, loss_act_[o], val_[v],
                                        labels_ptr_[o], y_ptr_[o], w, grad, groups, width,
                                        static_cast<float>(s.weight / *count), s.param,
                                        s.param2);
  return loss_forward<float>(s.loss, s.from_logits, val_[v], labels_ptr_[o], y_ptr_[o], w,
                             groups, width, s.param, nullptr, s.param2);
}

void Graph::add_metrics(StepResult& r, int64_t n) {
  for (size_t o = 0; o < outputs_.size(); ++o) {
    const auto& metrics = specs_[o].metrics;
    if (metrics.empty()) continue;
    const int oi = static_cast<int>(o);
    const int64_t rows = output_rows(oi), c = values_[outputs_[o]].size / rows;
    double count;
    const float* m;  // unweighted metrics still skip the rows left out: weighted by this
    const float* w = row_weights(oi, n, &count, &m);
    for (const MetricSpec& spec : metrics) {
      const size_t at = r.metric_sums.size();
      r.metric_sums.resize(at + metric_width(spec, c), 0.0);
      MetricSpec use = spec;
      const float* weights = w;
      if (!spec.weighted && m) {
        use.weighted = true;
        weights = m;
      }
      metric_add(use, val_[outputs_[o]], labels_ptr_[o], y_ptr_[o], weights, n * rows, c,
                 r.metric_sums.data() + at);
    }
    if (specs_[o].per_position || specs_[o].ignore) {  // denominators: rows counted, weight
      double counted = 0, weight = 0;
      for (int64_t i = 0; i < n * rows; ++i) {
        counted += m ? m[i] : 1.0;
        weight += w ? w[i] : 1.0;
      }
      r.metric_sums.push_back(counted);
      r.metric_sums.push_back(weight);
    }
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
  trained_rows_ = n;
  StepResult r;
  r.output_loss_sums.assign(outputs_.size(), 0.0);
  add_metrics(r, n);
  for (int k : zeroed_grads_) var_grads_[k].zero();
  run_backward(n, false, &r);
  for (const GradSum& s : grad_sums_) add_into(s.dst, s.src, s.size);
  if (!derived_.empty()) derived_backward(true);
  // Keras adds the regularizers' penalty to the batch's mean loss: n times to the sum;
  // the activity penalties divided by n: once.
  r.loss_sum += penalty(true) * static_cast<double>(n) + activity_penalty() + loss_terms(n, n);
  opt_->apply(opt_vars_, lr);
  for (size_t k = 0; k < constraints_.size(); ++k)  // Keras: after the update
    if (trainable_[k]) apply_constraint(constraints_[k], vars_[k]->data(), vars_[k]->size());
  return r;
}

const float* Graph::trained_output(int o) const {
  if (o < 0 || o >= num_outputs() || trained_rows_ == 0)
    throw std::out_of_range("trained_output: no such output, or no training step run");
  return val_[outputs_[o]];
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
  for (size_t o = 0; o < specs_.size(); ++o) {
    for (const MetricSpec& m : specs_[o].metrics)
      metrics += metric_width(m, output_columns(static_cast<int>(o)));
    if (!specs_[o].metrics.empty() && (specs_[o].per_position || specs_[o].ignore))
      metrics += 2;  // denominators
  }
  // Per output: the weighted loss sum and the count it is averaged over, over chunks.
  std::vector<double> sums(outputs_.size(), 0.0), counts(outputs_.size(), 0.0);
  r.metric_sums.assign(metrics, 0.0);
  StepResult part_r;
  double activity = 0;  // the activity penalties, summed over the chunks of the batch
  for (int64_t s = 0; s < b.n; s += rows) {
    const Batch part = sub_batch(b, s, std::min(rows, b.n - s));
    const int64_t n = part.n;
    plan(n, false);
    gather_inputs(part);
    gather_targets(part);
    forward(n, false);
    for (size_t o = 0; o < outputs_.size(); ++o) {
      if (!specs_[o].has_loss) continue;
      double count;
      sums[o] += output_loss(static_cast<int>(o), n, nullptr, &count);
      counts[o] += count;
    }
    activity += activity_penalty() + loss_terms(n, b.n);
    part_r.metric_sums.clear();
    add_metrics(part_r, n);
    for (size_t m = 0; m < metrics; ++m) r.metric_sums[m] += part_r.metric_sums[m];
  }
  for (size_t o = 0; o < outputs_.size(); ++o) {
    if (!specs_[o].has_loss) continue;
    r.output_loss_sums[o] = batch_loss_sum(sums[o], b.n, counts[o]);
    r.loss_sum += specs_[o].weight * r.output_loss_sums[o];
  }
  r.loss_sum += penalty(false) * static_cast<double>(b.n) + activity;
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

bool Graph::input_wants_grad(int v) const {
  for (size_t i = 0; i < inputs_.size(); ++i)
    if (inputs_[i] == v) return i < input_grads_.size() && input_grads_[i];
  return false;
}

void Graph::set_input_gradients(const std::vector<bool>& wanted) {
  if (finalized_) throw std::logic_error("Graph: set_input_gradients after the first step");
  input_grads_ = wanted;
}

void Graph::tape_run_forward(const Batch& b, bool training, uint64_t step) {
  plan(b.n, true);
  gather_inputs(b);
  step_ = step;
  nodes_training_ = training;
  try {
    forward(b.n, true);
  } catch (...) {
    nodes_training_ = true;
    throw;
  }
  nodes_training_ = true;
}

uint64_t Graph::tape_forward(const Batch& b, bool training, uint64_t step,
                             const std::vector<float*>& out) {
  std::lock_guard<std::mutex> lock(mu_);
  OpenMPUse openmp(true);
  check_batch(b, false);
  if (out.size() != outputs_.size())
    throw std::invalid_argument("tape_forward: expected one output array per model output");
  tape_run_forward(b, training, step);
  for (size_t o = 0; o < outputs_.size(); ++o)
    std::memcpy(out[o], val_[outputs_[o]], sizeof(float) * b.n * values_[outputs_[o]].size);
  return forwards_;
}

void Graph::tape_backward(const Batch& b, bool training, uint64_t step, uint64_t token,
                          const std::vector<float*>& dx) {
  std::lock_guard<std::mutex> lock(mu_);
  OpenMPUse openmp(true);
  check_batch(b, true);
  for (const OutputSpec& s : specs_)
    if (!s.external) throw std::logic_error("tape_backward: every output must be external");
  if (dx.size() != inputs_.size())
    throw std::invalid_argument("tape_backward: expected one gradient array per input");
  if (token != forwards_ || !training_planned_) {
    replaying_ = true;
    try {
      tape_run_forward(b, training, step);
    } catch (...) {
      replaying_ = false;
      throw;
    }
    replaying_ = false;
  }
  gather_targets(b);
  StepResult r;
  r.output_loss_sums.assign(outputs_.size(), 0.0);
  for (int k : zeroed_grads_) var_grads_[k].zero();
  step_ = step;
  run_backward(b.n, false, &r);
  for (const GradSum& s : grad_sums_) add_into(s.dst, s.src, s.size);
  if (!derived_.empty()) derived_backward(training);
  // An embedding table's gradient is the rows its batch used (the optimizer's sparse
  // path): the tape hands out the dense one.
  for (const auto& node : nodes_) {
    const auto* emb = dynamic_cast<const EmbeddingNode*>(node.get());
    if (!emb || emb->dense_grad) continue;
    const size_t k = var_index(emb->vars[0].var);
    if (!trainable_[k] || var_grads_[k].size() == 0) continue;
    float* g = var_grads_[k].data();
    std::fill(g, g + var_grads_[k].size(), 0.f);
    if (!needs_grad_[emb->output]) continue;
    const SparseRows& s = emb->sparse;
    for (int64_t i = 0; i < s.count; ++i)
      add_into(g + static_cast<int64_t>(s.rows[i]) * s.cols, s.values + i * s.cols, s.cols);
  }
  for (size_t i = 0; i < inputs_.size(); ++i) {
    if (!dx[i]) continue;
    const int v = inputs_[i];
    const int64_t c = values_[v].size;
    if (gbuf_[v] >= 0)
      std::memcpy(dx[i], grad_pool_[gbuf_[v]].data(), sizeof(float) * b.n * c);
    else
      std::fill(dx[i], dx[i] + b.n * c, 0.f);
  }
}

const FloatBuffer* Graph::variable_gradient(int k) const {
  if (k < 0 || k >= static_cast<int>(var_grads_.size()) || var_grads_[k].size() == 0)
    return nullptr;
  return &var_grads_[k];
}

double Graph::loss_terms(int64_t n, int64_t batch) const {
  double total = 0;
  for (const LossTerm& t : loss_terms_) {
    const float* v = val_[t.value];
    const int64_t frames = values_[t.value].frames;
    double s = 0;
    for (int64_t i = 0; i < n * frames; ++i) s += v[i];
    total += t.sum ? s * static_cast<double>(batch) : s / static_cast<double>(frames);
  }
  return total;
}

double Graph::activity_penalty() const {
  double total = 0;
  for (const auto& node : nodes_) total += node->penalty();
  return total;
}

}  // namespace ember
