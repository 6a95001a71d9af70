// test_embedding.cpp: the embedding gather, its sparse gradient, the fused max
// pooling, and the sparse optimizer update against dense references, bitwise.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "ember/embedding.h"
#include "ember/optimizers.h"
#include "ember/parallel.h"
#include "ember/pooling.h"
#include "test_util.h"

using namespace ember;
using ember_test::random_vec;

namespace {

constexpr int64_t kVocab = 37, kDim = 21, kN = 5, kSteps = 9;

std::vector<float> random_ids(int64_t n, uint32_t seed, int64_t vocab) {
  std::vector<float> ids(n);
  std::mt19937 gen(seed);
  for (auto& v : ids) v = static_cast<float>(gen() % vocab);
  return ids;
}

// The dense (vocab, dim) gradient the sparse rows stand for.
std::vector<float> densify(const int32_t* rows, const float* values, int64_t count) {
  std::vector<float> dense(kVocab * kDim, 0.f);
  for (int64_t k = 0; k < count; ++k)
    std::memcpy(&dense[rows[k] * kDim], values + k * kDim, sizeof(float) * kDim);
  return dense;
}

}  // namespace

TEST(Embedding, BadIdsAreFound) {
  std::vector<float> ids{0, 3, 36, 5};
  EXPECT_EQ(embedding_bad_id(ids.data(), 4, kVocab), -1);
  ids[2] = 37;
  EXPECT_EQ(embedding_bad_id(ids.data(), 4, kVocab), 2);
  ids[2] = 1.5f;
  EXPECT_EQ(embedding_bad_id(ids.data(), 4, kVocab), 2);
  ids[2] = -1;
  EXPECT_EQ(embedding_bad_id(ids.data(), 4, kVocab), 2);
  ids[2] = std::nanf("");
  EXPECT_EQ(embedding_bad_id(ids.data(), 4, kVocab), 2);
}

TEST(Embedding, GatherAndScatterMatchTheDenseReference) {
  const int64_t n = kN * kSteps;
  auto ids = random_ids(n, 1, 8);  // few distinct rows: many repeats
  auto table = random_vec(kVocab * kDim, 2);
  auto dy = random_vec(n * kDim, 3);
  std::vector<float> y(n * kDim);
  embedding_forward(ids.data(), table.data(), y.data(), n, kDim);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < kDim; ++j) EXPECT_EQ(y[i * kDim + j], table[int(ids[i]) * kDim + j]);

  std::vector<int32_t> slot(kVocab, -1), rows(n), order(n);
  std::vector<int64_t> offsets(n + 1);
  std::vector<float> values(n * kDim);
  const int64_t count = collect_rows(ids.data(), n, slot.data(), rows.data());
  embedding_backward(ids.data(), dy.data(), n, kDim, slot.data(), count, offsets.data(),
                     order.data(), values.data());
  std::vector<float> ref(kVocab * kDim, 0.f);  // the dense gradient, in position order
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < kDim; ++j) ref[int(ids[i]) * kDim + j] += dy[i * kDim + j];
  EXPECT_EQ(densify(rows.data(), values.data(), count), ref);
  clear_rows(slot.data(), rows.data(), count);
  for (int32_t s : slot) EXPECT_EQ(s, -1);
}

TEST(Embedding, FusedMaxPoolEqualsGatherThenPool) {
  auto ids = random_ids(kN * kSteps, 4, kVocab);
  for (int64_t t = 0; t < kSteps; ++t) ids[2 * kSteps + t] = 0;  // sample 2 fully masked
  ids[3 * kSteps + 1] = 0;
  auto table = random_vec(kVocab * kDim, 5);
  table[7 * kDim + 3] = table[9 * kDim + 3] = 2.f;  // a tie
  ids[kSteps + 0] = 7;
  ids[kSteps + 4] = 9;
  auto dy = random_vec(kN * kDim, 6);
  for (bool mask : {false, true}) {
    std::vector<float> y(kN * kDim), gathered(kN * kSteps * kDim), ref_y(kN * kDim);
    std::vector<int32_t> arg(kN * kDim), ref_arg(kN * kDim);
    embedding_maxpool_forward(ids.data(), table.data(), y.data(), arg.data(), kN, kSteps, kDim,
                              mask);
    embedding_forward(ids.data(), table.data(), gathered.data(), kN * kSteps, kDim);
    global_maxpool_forward(gathered.data(), ref_y.data(), ref_arg.data(), kN, kSteps, kDim,
                           mask ? ids.data() : nullptr);
    EXPECT_EQ(y, ref_y) << "mask " << mask;
    EXPECT_EQ(arg, ref_arg) << "mask " << mask;
    if (mask) EXPECT_EQ(y[2 * kDim], 0.f);

    // Backward: the fused scatter equals the pooled gradient scattered row by row.
    std::vector<int32_t> slot(kVocab, -1), rows(kN * kDim);
    std::vector<float> values(kN * kDim * kDim);
    const int64_t count = collect_argmax_rows(ids.data(), arg.data(), kN, kSteps, kDim,
                                              slot.data(), rows.data());
    embedding_maxpool_backward(ids.data(), arg.data(), dy.data(), kN, kSteps, kDim, slot.data(),
                               count, values.data());
    std::vector<float> dx(kN * kSteps * kDim), ref(kVocab * kDim, 0.f);
    global_maxpool_backward(dy.data(), ref_arg.data(), dx.data(), kN, kSteps, kDim);
    for (int64_t i = 0; i < kN * kSteps; ++i)
      for (int64_t j = 0; j < kDim; ++j) ref[int(ids[i]) * kDim + j] += dx[i * kDim + j];
    EXPECT_EQ(densify(rows.data(), values.data(), count), ref) << "mask " << mask;
  }
}

TEST(Embedding, BitIdenticalForAnyThreadCount) {
  const int64_t n = 300, steps = 40, dim = 24, vocab = 500;
  auto ids = random_ids(n * steps, 7, vocab);
  auto table = random_vec(vocab * dim, 8);
  auto dy = random_vec(n * steps * dim, 9);
  std::vector<std::vector<float>> outs;
  const int before = get_num_threads();
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    std::vector<int32_t> slot(vocab, -1), rows(n * steps), order(n * steps), arg(n * dim);
    std::vector<int64_t> offsets(n * steps + 1);
    std::vector<float> values(n * steps * dim), y(n * dim);
    const int64_t count = collect_rows(ids.data(), n * steps, slot.data(), rows.data());
    embedding_backward(ids.data(), dy.data(), n * steps, dim, slot.data(), count,
                       offsets.data(), order.data(), values.data());
    values.resize(count * dim);
    embedding_maxpool_forward(ids.data(), table.data(), y.data(), arg.data(), n, steps, dim,
                              false);
    values.insert(values.end(), y.begin(), y.end());
    outs.push_back(values);
  }
  set_num_threads(before);
  EXPECT_EQ(outs[0], outs[1]);
  EXPECT_EQ(outs[0], outs[2]);
}

// The sparse update of every optimizer equals its dense update with the zero-filled
// dense gradient, bit for bit, rows the batch did not use included.
TEST(Embedding, SparseOptimizerUpdateEqualsDense) {
  std::vector<OptimizerConfig> configs(10);
  configs[0].kind = Opt::Adam;
  configs[1].kind = Opt::Adam;
  configs[1].clipnorm = 0.5f;
  configs[1].weight_decay = 0.01f;
  configs[2].kind = Opt::SGD;
  configs[2].momentum = 0.9f;
  configs[3].kind = Opt::RMSprop;
  configs[3].momentum = 0.5f;
  configs[3].centered = true;
  configs[4].kind = Opt::Adagrad;
  configs[5].kind = Opt::Adam;
  configs[5].amsgrad = true;
  configs[6].kind = Opt::Adamax;
  configs[7].kind = Opt::Nadam;
  configs[8].kind = Opt::Lion;
  configs[9].kind = Opt::Adadelta;
  const int64_t n = kVocab * kDim;
  for (size_t c = 0; c < configs.size(); ++c) {
    Optimizer dense(configs[c]), sparse(configs[c]);
    auto w_dense = std::make_shared<Variable>(std::vector<int64_t>{kVocab, kDim});
    auto w_sparse = std::make_shared<Variable>(std::vector<int64_t>{kVocab, kDim});
    const auto w0 = random_vec(n, 10);
    std::copy(w0.begin(), w0.end(), w_dense->data());
    std::copy(w0.begin(), w0.end(), w_sparse->data());
    for (int step = 0; step < 3; ++step) {
      auto ids = random_ids(6, 20 + step, kVocab);
      std::vector<int32_t> slot(kVocab, -1), rows(6);
      const int64_t count = collect_rows(ids.data(), 6, slot.data(), rows.data());
      auto values = random_vec(count * kDim, 30 + step);
      const std::vector<float> g = densify(rows.data(), values.data(), count);
      SparseRows sp{count, kDim, rows.data(), slot.data(), values.data()};
      std::vector<float> unused(n, 123.f);  // the sparse path must not read it
      std::vector<OptVar> dvars{OptVar{w_dense.get(), g.data(), nullptr, true,
                                       &dense.slots_for(w_dense)}};
      std::vector<OptVar> svars{OptVar{w_sparse.get(), unused.data(), &sp, true,
                                       &sparse.slots_for(w_sparse)}};
      dense.apply(dvars, 0.01f);
      sparse.apply(svars, 0.01f);
      ASSERT_EQ(0, std::memcmp(w_dense->data(), w_sparse->data(), sizeof(float) * n))
          << "config " << c << " step " << step;
    }
  }
}
