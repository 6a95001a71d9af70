// embedding_node.cpp: the Embedding node, alone or fused with global max pooling.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "ember/nodes.h"

namespace ember {

EmbeddingNode::EmbeddingNode(int64_t input_dim, int64_t output_dim, int64_t steps,
                             bool mask_zero)
    : vocab_(input_dim), dim_(output_dim), steps_(steps), mask_zero_(mask_zero) {
  slot_.resize(vocab_);
  std::fill(slot_.data(), slot_.data() + vocab_, -1);
  sparse.cols = dim_;
}

void EmbeddingNode::fuse_max_pool() {
  fused_ = true;
  out_shape = {dim_};
  out_size = dim_;
}

void EmbeddingNode::plan(int64_t n) {
  // Growing rows_ discards the rows of the last step: release their slots first.
  clear_rows(slot_.data(), rows_.data(), sparse.count);
  sparse.count = 0;
  const int64_t ids = n * steps_, most = std::min(ids, vocab_);
  const int64_t kept = fused_ ? std::min(n * dim_, vocab_) : most;
  rows_.resize(kept);
  values_.resize(kept * dim_);
  if (!fused_) {
    offsets_.resize(most + 1);
    order_.resize(ids);
  }
}

void EmbeddingNode::forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) {
  const float* ids = x[0];
  const int64_t bad = embedding_bad_id(ids, n * steps_, vocab_);
  if (bad >= 0)
    throw std::invalid_argument(
        "Embedding: index " + std::to_string(ids[bad]) + " (sample " +
        std::to_string(bad / steps_) + ", step " + std::to_string(bad % steps_) +
        ") is outside [0, input_dim=" + std::to_string(vocab_) + ")");
  const float* table = vars[0].var->data();
  if (fused_)
    embedding_maxpool_forward(ids, table, y, ctx.training ? argmax() : nullptr, n, steps_,
                              dim_, mask_zero_);
  else
    embedding_forward(ids, table, y, n * steps_, dim_);
}

void EmbeddingNode::backward(const StepCtx&, const float* const* x, const float*, float* dy,
                             float* const*, int64_t n, bool) {
  const float* ids = x[0];
  clear_rows(slot_.data(), rows_.data(), sparse.count);
  int64_t count;
  if (fused_) {
    count = collect_argmax_rows(ids, argmax(), n, steps_, dim_, slot_.data(), rows_.data());
    embedding_maxpool_backward(ids, argmax(), dy, n, steps_, dim_, slot_.data(), count,
                               values_.data());
  } else {
    count = collect_rows(ids, n * steps_, slot_.data(), rows_.data());
    embedding_backward(ids, dy, n * steps_, dim_, slot_.data(), count, offsets_.data(),
                       order_.data(), values_.data());
  }
  sparse.count = count;
  sparse.rows = rows_.data();
  sparse.slot = slot_.data();
  sparse.values = values_.data();
  if (dense_grad && vars[0].grad) {  // a shared table: add this use's rows
    float* g = vars[0].grad;
    for (int64_t k = 0; k < count; ++k) {
      float* row = g + static_cast<int64_t>(rows_[k]) * dim_;
      const float* v = values_.data() + k * dim_;
      for (int64_t j = 0; j < dim_; ++j) row[j] += v[j];
    }
  }
}

}  // namespace ember
