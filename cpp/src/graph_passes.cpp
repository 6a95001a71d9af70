// graph_passes.cpp: what runs once before the first step: the fusion passes (rewrites
// of the DAG where they are valid) and the inference buffer plan by liveness.
#include <algorithm>
#include <cmath>
#include <string>

#include "ember/graph.h"

namespace ember {
namespace {

// A view standing in for a node that a fusion made a no-op: it passes the node's first
// input on as its output.
std::unique_ptr<Node> view_in_place_of(const Node& node) {
  auto view = std::make_unique<ReshapeNode>();
  view->inputs = {node.inputs[0]};
  view->in_sizes = {node.in_sizes[0]};
  view->output = node.output;
  view->out_shape = node.out_shape;
  view->out_size = node.out_size;
  view->frames = node.frames;
  view->batch_frames = node.batch_frames;
  return view;
}

}  // namespace

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
    auto view = view_in_place_of(*pool);
    view->in_sizes = {emb->out_size};
    if (pool->inputs.size() > 1) {  // the mask: the fused node applies it itself
      auto& r = values_[pool->inputs[1]].readers;
      r.erase(std::find(r.begin(), r.end(), static_cast<int>(i)));
    }
    nodes_[i] = std::move(view);
    fusions_.push_back("embedding+global_max_pool at node " + std::to_string(p));
  }
}

// A traced `matmul(x, w) + b`: a Dense node without a bias, read only by an Add of a
// variable broadcast along its last axis. The variable becomes the Dense's bias (the
// GEMM's epilogue) and the Add a view.
void Graph::fuse_bias_into_dense() {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    auto* add = dynamic_cast<BinaryNode*>(nodes_[i].get());
    if (!add || add->op() != BinaryOp::Add || add->inputs.size() != 1) continue;
    const int side = add->operand(0).var >= 0 ? 1 : 0;
    const Operand& val = add->operand(side);
    const Operand& bias = add->operand(1 - side);
    const int x = add->inputs[0], p = values_[x].producer;
    auto* dense = p >= 0 ? dynamic_cast<DenseNode*>(nodes_[p].get()) : nullptr;
    if (!dense || dense->vars.size() != 1 || dense->act != Act::Linear || !val.map.empty() ||
        !only_reader(x, static_cast<int>(i)))
      continue;
    const int64_t units = dense->out_shape.back();
    bool along_last = bias.size == units;
    for (int64_t e = 0; along_last && e < static_cast<int64_t>(bias.map.size()); ++e)
      along_last = bias.map[e] == e % units;
    if (!along_last || (bias.map.empty() && dense->out_size != units)) continue;
    dense->vars.push_back(add->vars[bias.var]);
    nodes_[i] = view_in_place_of(*add);
    fusions_.push_back("bias add into dense at node " + std::to_string(p));
  }
}

// An Activation layer after a Dense, Conv2D, Conv2DTranspose or BatchNormalization
// without one, or a relu after an Add, the only reader of its output: the activation
// moves into the producer (the GEMM epilogue for relu, the Add's sum) and the
// Activation node becomes a view.
void Graph::fuse_activation_into_producer() {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    auto* act = dynamic_cast<ActivationNode*>(nodes_[i].get());
    if (!act || act_needs_input(act->act) || !std::isnan(act->alpha)) continue;
    const int x = act->inputs[0];
    if (!only_reader(x, static_cast<int>(i))) continue;
    // Through views of the same shape that alone read their input (a fused bias add).
    int p = values_[x].producer;
    while (p >= 0 && nodes_[p]->is_view() && nodes_[p]->out_shape == act->out_shape &&
           values_[nodes_[p]->inputs[0]].shape == act->out_shape &&
           only_reader(nodes_[p]->inputs[0], p))
      p = values_[nodes_[p]->inputs[0]].producer;
    if (p < 0 || nodes_[p]->act != Act::Linear) continue;
    if (!dynamic_cast<DenseNode*>(nodes_[p].get()) && !dynamic_cast<Conv2DNode*>(nodes_[p].get()) &&
        !dynamic_cast<Conv2DTransposeNode*>(nodes_[p].get()) &&
        !dynamic_cast<DepthwiseNode*>(nodes_[p].get()) &&
        !dynamic_cast<BatchNormNode*>(nodes_[p].get())) {
      const auto* merge = dynamic_cast<MergeNode*>(nodes_[p].get());
      if (!merge || !merge->takes_relu() || act->act != Act::Relu) continue;
    }
    nodes_[p]->act = act->act;
    nodes_[i] = view_in_place_of(*act);
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

// A BatchNormalization (relu or no activation) whose input is a Conv2D's (one group) or
// a Dense's output (no activation of its own) read by nothing else: outside training
// that node applies it in its GEMM's epilogue as a per-channel scale and shift, with
// the BatchNormalization's relu, each block of the output while it is in cache, and the
// BatchNormalization is a view (a chain of Dense layers at batch 1 runs through it).
// The same operations in the same order: the same bits. Training runs both nodes as
// before.
void Graph::fold_batchnorm() {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    auto* bn = dynamic_cast<BatchNormNode*>(nodes_[i].get());
    if (!bn || (bn->act != Act::Linear && bn->act != Act::Relu)) continue;
    const int x = bn->inputs[0];
    const int p = values_[x].producer;
    if (p < 0 || !only_reader(x, static_cast<int>(i))) continue;
    auto* conv = dynamic_cast<Conv2DNode*>(nodes_[p].get());
    auto* dense = dynamic_cast<DenseNode*>(nodes_[p].get());
    if (conv && conv->can_fold(bn->channels()))
      conv->folded_bn = bn;
    else if (dense && dense->can_fold(bn->channels()))
      dense->folded_bn = bn;
    else
      continue;
    bn->fold();
    fusions_.push_back("batch normalization " + std::to_string(i) + " into node " +
                       std::to_string(p) + " at inference");
  }
}

// Dense nodes on 1-D samples, consecutive in the node order with only inference views
// (dropout, reshape) between them, each value read by the next alone, all but the last
// ending in a ReLU or nothing: inference at a few rows runs them as one
// sgemm_small_chain.
void Graph::find_dense_chains() {
  chain_at_.assign(nodes_.size(), -1);
  auto dense_1d = [&](int i) {
    return dynamic_cast<const DenseNode*>(nodes_[i].get()) && nodes_[i]->frames == 1 &&
           nodes_[i]->out_shape.size() == 1 &&
           values_[nodes_[i]->inputs[0]].shape.size() == 1;
  };
  const int N = static_cast<int>(nodes_.size());
  for (int i = 0; i < N; ++i) {
    if (!dense_1d(i)) continue;
    Chain c;
    c.first = c.last = i;
    c.dense.push_back(i);
    for (int cur = i;;) {
      const Act a = static_cast<const DenseNode&>(*nodes_[cur]).inference_act();
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
// Outputs (and their masks) are never given up.
void Graph::plan_inference_buffers() {
  const int V = static_cast<int>(values_.size());
  infer_home_.assign(V, -1);
  buf_floats_.assign(V, 0);
  std::vector<int> refs(V, 0), free;
  // Outputs, and the masks that weigh their losses, live to the end.
  auto is_output = [&](int v) {  // read after the forward (an add_loss term too)
    for (int o : outputs_)
      if (o == v || values_[o].mask == v) return true;
    for (const LossTerm& t : loss_terms_)
      if (t.value == v) return true;
    return false;
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
        if (buf_floats_[f] >= node.out_floats() &&
            (best < 0 || buf_floats_[f] < buf_floats_[free[best]]))
          best = static_cast<int>(k);
      }
      if (best >= 0) {
        b = free[best];
        free.erase(free.begin() + best);
      } else {
        b = out;
      }
      buf_floats_[b] = std::max(buf_floats_[b], node.out_floats());
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
    if (p >= 0 && !nodes_[p]->is_view())
      buf_floats_[v] = std::max(buf_floats_[v], values_[v].floats());
  }
}

}  // namespace ember
