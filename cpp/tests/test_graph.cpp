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

VariablePtr var(std::vector<int64_t> shape, uint64_t seed) {
  auto v = std::make_shared<Variable>(std::move(shape));
  fill_uniform(v->data(), v->size(), -0.3f, 0.3f, seed, 0);
  return v;
}

// Two blobs of 16-d points, labels 0/1, and a 16-32-2 MLP with dropout.
struct Fixture {
  std::vector<float> x;
  std::vector<int32_t> labels;
  Graph g;
  std::vector<VariablePtr> vars{var({16, 32}, 1), var({32}, 2), var({32, 2}, 3), var({2}, 4)};
  explicit Fixture(int64_t rows = 256) {
    x = random_vec(rows * 16, 11);
    labels.resize(rows);
    for (int64_t i = 0; i < rows; ++i) {
      labels[i] = static_cast<int32_t>(i % 2);
      x[i * 16] += labels[i] ? 2.f : -2.f;
    }
    int v = g.add_input({16});
    v = g.add_dense(v, vars[0], vars[1], Act::Relu);
    v = g.add_dropout(v, 0.1f, 5);
    v = g.add_dense(v, vars[2], vars[3], Act::Softmax);
    g.set_outputs({v});
    OutputSpec spec;
    spec.has_loss = true;
    spec.loss = Loss::SparseCategoricalCrossentropy;
    spec.metrics = {MetricSpec{Metric::SparseCategoricalAccuracy}};
    g.set_output_spec(0, spec);
    OptimizerConfig c;
    c.kind = Opt::Adam;
    g.set_optimizer(std::make_shared<Optimizer>(c));
  }
  Batch batch(int64_t start, int64_t n) {
    Batch b;
    b.x = {x.data()};
    b.labels = {labels.data()};
    b.y = {nullptr};
    b.rows = static_cast<int64_t>(labels.size());
    b.start = start;
    b.n = n;
    return b;
  }
  std::vector<float> weights() const {
    std::vector<float> all;
    for (const auto& v : vars) all.insert(all.end(), v->data(), v->data() + v->size());
    return all;
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
    results.push_back(f.weights());
  }
  set_num_threads(saved);
  EXPECT_EQ(0, std::memcmp(results[0].data(), results[1].data(),
                           sizeof(float) * results[0].size()));
}

TEST(Graph, PredictMatchesTestForwardAndGathers) {
  Fixture f;
  std::vector<float> out(4 * 2), out2(4 * 2);
  f.g.predict(f.batch(8, 4), {out.data()});
  std::vector<int64_t> idx = {8, 9, 10, 11};
  Batch b = f.batch(0, 0);
  b.idx = idx.data();
  b.n = 4;
  f.g.predict(b, {out2.data()});
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
  Graph g;
  const int x = g.add_input({4});
  EXPECT_THROW(g.add_dense(x, var({5, 2}, 1), nullptr, Act::Relu), std::invalid_argument);
  EXPECT_THROW(g.add_dropout(x, 1.5f, 0), std::invalid_argument);
  EXPECT_THROW(g.add_merge(MergeOp::Add, {x, g.add_input({3})}), std::invalid_argument);
  EXPECT_THROW(g.add_dense(99, var({4, 2}, 1), nullptr, Act::Relu), std::invalid_argument);
  EXPECT_THROW(g.add_input({0}), std::invalid_argument);
}

// One layer used twice (x W + x W) trains like one layer of weights 2W whose
// learning rate is 4x: d/dW L(x 2W) = 2 dL/dV, and V = 2W moves by 2 * lr * 2 dL/dV.
TEST(Graph, SharedVariableSumsTheGradientsOfItsUses) {
  auto x = random_vec(8 * 3, 7);
  std::vector<float> y = random_vec(8 * 2, 8);
  auto w = var({3, 2}, 9);
  auto v = std::make_shared<Variable>(std::vector<int64_t>{3, 2});
  for (int i = 0; i < 6; ++i) v->data()[i] = 2 * w->data()[i];
  OutputSpec mse;
  mse.has_loss = true;
  mse.loss = Loss::MeanSquaredError;
  OptimizerConfig sgd;
  sgd.kind = Opt::SGD;
  Graph shared, single;
  int in = shared.add_input({3});
  int a = shared.add_dense(in, w, nullptr, Act::Linear);
  int b = shared.add_dense(in, w, nullptr, Act::Linear);
  shared.set_outputs({shared.add_merge(MergeOp::Add, {a, b})});
  in = single.add_input({3});
  single.set_outputs({single.add_dense(in, v, nullptr, Act::Linear)});
  for (Graph* g : {&shared, &single}) {
    g->set_output_spec(0, mse);
    g->set_optimizer(std::make_shared<Optimizer>(sgd));
  }
  EXPECT_EQ(shared.variables().size(), 1u);
  Batch batch;
  batch.x = {x.data()};
  batch.y = {y.data()};
  batch.labels = {nullptr};
  batch.rows = batch.n = 8;
  const double l1 = shared.train_step(batch, 0.1f).loss_sum;
  const double l2 = single.train_step(batch, 0.4f).loss_sum;
  EXPECT_NEAR(l1, l2, 1e-5 * std::abs(l2));
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(2 * w->data()[i], v->data()[i], 1e-5);
}

// Inference reuses a buffer once its last reader has run: a chain of four Dense layers
// needs two buffers' worth, training keeps all four.
TEST(Graph, InferenceBuffersAreReusedByLiveness) {
  Graph g;
  int v = g.add_input({8});
  for (int i = 0; i < 4; ++i) v = g.add_dense(v, var({8, 8}, i), nullptr, Act::Tanh);
  g.set_outputs({v});
  std::vector<float> x = random_vec(4 * 8, 3), out(4 * 8);
  Batch b;
  b.x = {x.data()};
  b.rows = b.n = 4;
  g.predict(b, {out.data()});
  EXPECT_EQ(g.inference_floats_per_sample(), 2 * 8);  // two in flight at any time
  EXPECT_EQ(g.training_floats_per_sample(), 4 * 8);
}

// A node flagged inference-only runs in inference mode inside a training step: a
// dropout of rate 0.5 then passes its input through unchanged.
TEST(Graph, InferenceOnlyNodeRunsAsInInference) {
  auto x = random_vec(4 * 3, 5);
  std::vector<float> y(4 * 3, 0.f);
  for (bool frozen : {false, true}) {
    auto w = std::make_shared<Variable>(std::vector<int64_t>{3, 3});
    for (int i = 0; i < 3; ++i) w->data()[i * 4] = 1.f;  // identity
    Graph g;
    const int in = g.add_input({3});
    const int d = g.add_dropout(in, 0.5f, 1);
    g.set_outputs({g.add_dense(d, w, nullptr, Act::Linear)});
    if (frozen) g.set_inference_only(d, true);
    OutputSpec mse;
    mse.has_loss = true;
    g.set_output_spec(0, mse);
    OptimizerConfig sgd;
    sgd.kind = Opt::SGD;
    g.set_optimizer(std::make_shared<Optimizer>(sgd));
    Batch b;
    b.x = {x.data()};
    b.y = {y.data()};
    b.labels = {nullptr};
    b.rows = b.n = 4;
    // With the identity kernel and zero targets the loss is the mean of out^2.
    double clean = 0;
    for (float v : x) clean += double(v) * v;
    clean /= 3.0;  // per sample: mean over 3 outputs; summed over 4 samples
    const double loss = g.train_step(b, 0.f).loss_sum;
    if (frozen)
      EXPECT_NEAR(loss, clean, 1e-5 * clean);
    else
      EXPECT_GT(std::abs(loss - clean), 1e-3 * clean);  // dropped and rescaled
  }
}

// A traced train_step holds a whole batch as one sample: Dense and BatchNormalization
// run on its rows inside batch frames, and the loss is a value whose gradient is given.
// The step must equal the ordinary one over the same rows (BatchNormalization's
// statistics over the batch, not per row), and trained_output reads the values.
TEST(Graph, BatchFramesTrainAsTheRowsOfABatch) {
  const int64_t rows = 6;
  auto x = random_vec(rows * 3, 21);
  std::vector<float> zeros(rows * 4, 0.f);
  auto make_vars = [] {
    auto mm = std::make_shared<Variable>(std::vector<int64_t>{4});
    auto mv = std::make_shared<Variable>(std::vector<int64_t>{4});
    for (int i = 0; i < 4; ++i) mv->data()[i] = 1.f;
    auto gamma = std::make_shared<Variable>(std::vector<int64_t>{4});
    for (int i = 0; i < 4; ++i) gamma->data()[i] = 1.f;
    return std::vector<VariablePtr>{var({3, 4}, 22), var({4}, 23), gamma,
                                    std::make_shared<Variable>(std::vector<int64_t>{4}), mm, mv};
  };
  OptimizerConfig sgd;
  sgd.kind = Opt::SGD;
  // Plain: rows samples, loss = sum over the batch of (1/2) sum y^2 (MSE against zeros
  // is mean over 4 columns, averaged over rows: scale to match below).
  auto a = make_vars();
  Graph plain;
  int v = plain.add_input({3});
  v = plain.add_dense(v, a[0], a[1], Act::Linear);
  v = plain.add_batch_norm(v, a[2], a[3], a[4], a[5], 1e-3f, 0.99f);
  plain.set_outputs({v});
  OutputSpec mse;
  mse.has_loss = true;
  plain.set_output_spec(0, mse);
  plain.set_optimizer(std::make_shared<Optimizer>(sgd));
  Batch pb;
  pb.x = {x.data()};
  pb.y = {zeros.data()};
  pb.labels = {nullptr};
  pb.rows = pb.n = rows;
  const double plain_loss = plain.train_step(pb, 0.1f).loss_sum / rows;
  // Whole batch: one sample of (rows, 3); the loss mean(y^2) over (rows, 4), computed
  // with op nodes, its gradient 1 given at the output.
  auto b = make_vars();
  Graph whole;
  const int in = whole.add_input({rows, 3});
  int f = whole.add_frames(in, true);
  f = whole.add_dense(f, b[0], b[1], Act::Linear);
  f = whole.add_batch_norm(f, b[2], b[3], b[4], b[5], 1e-3f, 0.99f);
  const int y = whole.add_unframes(f, in);
  const int sq = whole.add_unary(y, UnaryOp::Square, 0.f, 0.f);
  std::vector<int32_t> all(rows * 4, 0), pos(rows * 4);
  for (int i = 0; i < rows * 4; ++i) pos[i] = i;
  const int loss = whole.add_reduce(sq, ReduceOp::Mean, all, pos, {1});
  whole.set_outputs({loss, y});
  OutputSpec ext;
  ext.has_loss = ext.external = true;
  whole.set_output_spec(0, ext);
  whole.set_optimizer(std::make_shared<Optimizer>(sgd));
  std::vector<float> one{1.f};
  Batch wb;
  wb.x = {x.data()};
  wb.y = {one.data(), nullptr};
  wb.labels = {nullptr, nullptr};
  wb.rows = wb.n = 1;
  whole.train_step(wb, 0.1f);
  EXPECT_NEAR(whole.trained_output(0)[0], plain_loss, 1e-5);
  for (size_t k = 0; k < a.size(); ++k)
    for (int64_t i = 0; i < a[k]->size(); ++i)
      EXPECT_NEAR(a[k]->data()[i], b[k]->data()[i], 1e-5) << "variable " << k;
}

// A variable read as a value: each row is the variable, its gradient the rows' sum.
TEST(Graph, VariableValueSumsItsRowsGradients) {
  auto w = var({2, 3}, 31);
  std::vector<float> before(w->data(), w->data() + 6);
  Graph g;
  g.add_input({1});
  const int v = g.add_variable(w);
  g.set_outputs({v});
  OutputSpec ext;
  ext.has_loss = ext.external = true;
  g.set_output_spec(0, ext);
  OptimizerConfig sgd;
  sgd.kind = Opt::SGD;
  g.set_optimizer(std::make_shared<Optimizer>(sgd));
  std::vector<float> x(3, 0.f), dy = random_vec(3 * 6, 32);
  Batch b;
  b.x = {x.data()};
  b.y = {dy.data()};
  b.labels = {nullptr};
  b.rows = b.n = 3;
  g.train_step(b, 1.f);
  for (int e = 0; e < 6; ++e) {
    EXPECT_EQ(g.trained_output(0)[6 + e], before[e]);  // row 1 is the variable
    EXPECT_NEAR(w->data()[e], before[e] - (dy[e] + dy[6 + e] + dy[12 + e]), 1e-6);
  }
}

// A weight computed from another (twice the transpose of a (2, 3) weight): the program
// fills it before each forward, its gradient flows back to the source, and the
// optimizer updates the source only. Against a Dense holding 2 v^T itself: the same
// loss, and since d loss / d v = 2 (d loss / d D)^T, SGD moves 2 v^T four times as far
// as it moves D.
TEST(Graph, DerivedWeightTrainsItsSource) {
  auto v = var({2, 3}, 41);
  auto direct = std::make_shared<Variable>(std::vector<int64_t>{3, 2});
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) direct->data()[i * 2 + j] = 2.f * v->data()[j * 3 + i];
  const std::vector<float> d0(direct->data(), direct->data() + 6);
  auto x = random_vec(5 * 3, 42);
  std::vector<float> y(5 * 2, 0.5f);
  OutputSpec mse;
  mse.has_loss = true;
  OptimizerConfig sgd;
  sgd.kind = Opt::SGD;
  Batch b;
  b.x = {x.data()};
  b.y = {y.data()};
  b.labels = {nullptr};
  b.rows = b.n = 5;
  auto program = std::make_shared<Graph>();
  program->add_input({1});
  const int pv = program->add_variable(v);
  std::vector<int32_t> t(6);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) t[i * 2 + j] = j * 3 + i;
  const int pt = program->add_gather(pv, t, {3, 2});
  program->set_outputs({program->add_unary(pt, UnaryOp::Affine, 2.f, 0.f)});
  auto out = std::make_shared<Variable>(std::vector<int64_t>{3, 2});
  Graph g;
  const int in = g.add_input({3});
  g.set_outputs({g.add_dense(in, out, nullptr, Act::Linear)});
  g.add_derived(program, out);
  g.set_output_spec(0, mse);
  g.set_optimizer(std::make_shared<Optimizer>(sgd));
  EXPECT_EQ(g.variables().size(), 2u);  // out, then its source
  Graph ref;
  const int rin = ref.add_input({3});
  ref.set_outputs({ref.add_dense(rin, direct, nullptr, Act::Linear)});
  ref.set_output_spec(0, mse);
  ref.set_optimizer(std::make_shared<Optimizer>(sgd));
  const double l1 = g.train_step(b, 0.1f).loss_sum;
  const double l2 = ref.train_step(b, 0.1f).loss_sum;
  EXPECT_NEAR(l1, l2, 1e-6 * std::abs(l2));
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) {
      const float moved = 2.f * v->data()[j * 3 + i] - d0[i * 2 + j];
      EXPECT_NEAR(moved, 4.f * (direct->data()[i * 2 + j] - d0[i * 2 + j]), 1e-5);
    }
  // The next forward refills out from the moved source.
  std::vector<float> pred(5 * 2);
  Batch p = b;
  g.predict(p, {pred.data()});
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) EXPECT_EQ(out->data()[i * 2 + j], 2.f * v->data()[j * 3 + i]);
}
