// test_graph.cpp: the executor end to end: training lowers the loss, steady state
// allocates nothing, results do not depend on the thread count.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "ember/graph.h"
#include "ember/parallel.h"
#include "ember/random.h"
#include "test_util.h"

using namespace ember;
using ember_test::random_vec;

namespace {

// Two blobs of 16-d points, labels 0/1, and a 16-32-2 MLP with dropout.
struct Fixture {
  std::vector<float> x;
  std::vector<int32_t> labels;
  Graph g{std::vector<int64_t>{16}};
  explicit Fixture(int64_t rows = 256) {
    x = random_vec(rows * 16, 11);
    labels.resize(rows);
    for (int64_t i = 0; i < rows; ++i) {
      labels[i] = static_cast<int32_t>(i % 2);
      x[i * 16] += labels[i] ? 2.f : -2.f;
    }
    g.add_dense(32, Act::Relu, true);
    g.add_dropout(0.1f, 5);
    g.add_dense(2, Act::Softmax, true);
    fill_uniform(g.params(), g.num_params(), -0.3f, 0.3f, 1, 0);
    g.set_loss(Loss::SparseCategoricalCrossentropy, false);
    g.set_metrics({MetricSpec{Metric::SparseCategoricalAccuracy}});
    OptimizerConfig c;
    c.kind = Opt::Adam;
    g.set_optimizer(c);
  }
  Batch batch(int64_t start, int64_t n) {
    Batch b;
    b.x = x.data();
    b.labels = labels.data();
    b.rows = static_cast<int64_t>(labels.size());
    b.start = start;
    b.n = n;
    return b;
  }
};

}  // namespace

TEST(Graph, TrainingLowersLossAndAllocatesOnce) {
  Fixture f;
  double first = 0, last = 0;
  for (int epoch = 0; epoch < 20; ++epoch) {
    double sum = 0;
    for (int64_t s = 0; s < 256; s += 50) {
      const int64_t n = std::min<int64_t>(50, 256 - s);
      sum += f.g.train_step(f.batch(s, n), 0.01f).loss_sum;
    }
    if (epoch == 0) first = sum;
    last = sum;
  }
  EXPECT_LT(last, 0.2 * first);
  EXPECT_EQ(f.g.allocations(), 1);  // sized at the first batch of 50, reused after
  StepResult r = f.g.test_step(f.batch(0, 256));
  EXPECT_GT(r.metric_sums.at(0) / 256, 0.95);
  EXPECT_EQ(f.g.allocations(), 2);  // a larger batch grows the plan once
}

TEST(Graph, BitIdenticalWeightsForAnyThreadCount) {
  const int saved = get_num_threads();
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    Fixture f(512);
    for (int64_t s = 0; s < 512; s += 64) f.g.train_step(f.batch(s, 64), 0.01f);
    results.emplace_back(f.g.params(), f.g.params() + f.g.num_params());
  }
  set_num_threads(saved);
  EXPECT_EQ(0, std::memcmp(results[0].data(), results[1].data(),
                           sizeof(float) * results[0].size()));
}

TEST(Graph, PredictMatchesTestForwardAndGathers) {
  Fixture f;
  std::vector<float> out(4 * 2), out2(4 * 2);
  f.g.predict(f.batch(8, 4), out.data());
  std::vector<int64_t> idx = {8, 9, 10, 11};
  Batch b = f.batch(0, 0);
  b.idx = idx.data();
  b.n = 4;
  f.g.predict(b, out2.data());
  EXPECT_EQ(0, std::memcmp(out.data(), out2.data(), sizeof(float) * 8));
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(out[2 * i] + out[2 * i + 1], 1.f, 1e-6);
  // test_step runs the same inference forward: its loss and accuracy are those of the
  // predicted probabilities, for rows by range and rows gathered by index alike.
  double loss = 0, hits = 0;
  for (int i = 0; i < 4; ++i) {
    const int32_t label = f.labels[8 + i];
    loss -= std::log(static_cast<double>(out[2 * i + label]));
    hits += (out[2 * i + label] > out[2 * i + 1 - label]) ? 1 : 0;
  }
  for (const Batch& tb : {f.batch(8, 4), b}) {
    const StepResult r = f.g.test_step(tb);
    EXPECT_NEAR(r.loss_sum, loss, 1e-5 * std::abs(loss));
    EXPECT_EQ(r.metric_sums.at(0), hits);
  }
}

TEST(Graph, RejectsBadInput) {
  Fixture f;
  f.labels[3] = 7;
  EXPECT_THROW(f.g.train_step(f.batch(0, 8), 0.01f), std::invalid_argument);
  EXPECT_THROW(f.g.train_step(f.batch(0, 0), 0.01f), std::invalid_argument);
  EXPECT_THROW(f.g.train_step(f.batch(250, 10), 0.01f), std::invalid_argument);
  EXPECT_THROW(f.g.add_dense(0, Act::Relu, true), std::invalid_argument);
  EXPECT_THROW(f.g.add_dropout(1.5f, 0), std::invalid_argument);
  EXPECT_THROW(Graph(std::vector<int64_t>{0}), std::invalid_argument);
}
