// test_conv.cpp: Conv2D and pooling kernels against their direct references, on
// awkward shapes, and bit-identical across thread counts.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "ember/conv2d.h"
#include "ember/graph.h"
#include "ember/parallel.h"
#include "ember/pooling.h"
#include "test_util.h"

using namespace ember;
using ember_test::max_rel_err;
using ember_test::random_vec;

namespace {

struct ConvCase {
  int64_t n, h, w, c, kh, kw, f, sh, sw, dh, dw;
  bool same;
};

// Odd sizes, strides 2, dilation 2, 'same', 1x1 kernels, batch 1, a batch large
// enough to span several input-gradient blocks and to split the weight gradient's
// long K over padded windows, a kernel as large as the input (one output row: the
// small-M path), and whole vectors of channels through col2im (valid, strided 'same',
// dilated) and of filters through the bias's sums (80).
const ConvCase kConvCases[] = {
    {2, 7, 9, 3, 3, 3, 5, 1, 1, 1, 1, false},  {3, 8, 8, 4, 3, 2, 6, 2, 2, 1, 1, true},
    {1, 9, 7, 2, 3, 3, 4, 1, 1, 2, 2, true},   {2, 9, 11, 3, 3, 3, 7, 1, 1, 2, 1, false},
    {2, 5, 5, 3, 1, 1, 7, 1, 1, 1, 1, false},  {2, 6, 7, 3, 1, 1, 4, 2, 2, 1, 1, true},
    {1, 1, 1, 5, 1, 1, 17, 1, 1, 1, 1, true},  {1, 4, 4, 1, 4, 4, 3, 1, 1, 1, 1, false},
    {3, 5, 6, 2, 5, 5, 5, 2, 3, 1, 1, true},   {40, 16, 16, 8, 3, 3, 19, 1, 1, 1, 1, true},
    {2, 13, 13, 17, 3, 3, 33, 2, 2, 1, 1, false}, {3, 9, 9, 32, 3, 3, 8, 1, 1, 1, 1, false},
    {2, 10, 11, 16, 3, 3, 80, 2, 2, 1, 1, true},  {2, 9, 9, 16, 3, 3, 4, 1, 1, 2, 2, false},
};

Conv2DShape make(const ConvCase& k) {
  return conv2d_shape(k.n, k.h, k.w, k.c, k.kh, k.kw, k.f, k.sh, k.sw, k.dh, k.dw, k.same);
}

}  // namespace

TEST(Conv2D, OutputShapesFollowKeras) {
  // 'valid': floor((in - (k-1)*d - 1) / s) + 1; 'same': ceil(in / s).
  EXPECT_EQ(conv_output_length(32, 3, 1, 1, false), 30);
  EXPECT_EQ(conv_output_length(7, 3, 2, 1, false), 3);
  EXPECT_EQ(conv_output_length(9, 3, 1, 2, false), 5);
  EXPECT_EQ(conv_output_length(7, 3, 2, 1, true), 4);
  EXPECT_EQ(conv_output_length(2, 3, 1, 1, false), 0);
  // 'same', stride 2, even input: total padding 1 goes after (TensorFlow's rule).
  EXPECT_EQ(conv_pad_before(8, 3, 2, 1, true), 0);
  EXPECT_EQ(conv_pad_before(7, 3, 2, 1, true), 1);
  EXPECT_EQ(conv_pad_before(9, 3, 1, 2, true), 2);
}

TEST(Conv2D, RejectsBadShapes) {
  EXPECT_THROW(conv2d_shape(1, 2, 2, 1, 3, 3, 4, 1, 1, 1, 1, false), std::invalid_argument);
  EXPECT_THROW(conv2d_shape(1, 8, 8, 1, 3, 3, 0, 1, 1, 1, 1, false), std::invalid_argument);
  EXPECT_THROW(conv2d_shape(1, 8, 8, 1, 0, 3, 4, 1, 1, 1, 1, false), std::invalid_argument);
  EXPECT_THROW(conv2d_shape(1, 8, 8, 1, 3, 3, 4, 0, 1, 1, 1, false), std::invalid_argument);
  EXPECT_THROW(conv2d_shape(1, 8, 8, 1, 3, 3, 4, 2, 2, 2, 2, false), std::invalid_argument);
}

TEST(Conv2D, ForwardMatchesReference) {
  for (const ConvCase& k : kConvCases) {
    const Conv2DShape s = make(k);
    auto x = random_vec(s.n * s.h * s.w * s.c, 1);
    auto w = random_vec(s.k() * s.f, 2);
    auto b = random_vec(s.f, 3);
    const int64_t ysize = s.n * s.oh * s.ow * s.f;
    std::vector<float> y(ysize), ref(ysize);
    conv2d_forward(s, x.data(), w.data(), b.data(), y.data(), Act::Linear);
    conv2d_forward_ref<float>(s, x.data(), w.data(), b.data(), ref.data());
    EXPECT_LT(max_rel_err(y, ref), 1e-5) << "case n=" << k.n << " h=" << k.h << " k=" << k.kh;
    // relu fused into the GEMM epilogue.
    conv2d_forward(s, x.data(), w.data(), b.data(), y.data(), Act::Relu);
    for (auto& v : ref) v = v > 0.f ? v : 0.f;
    EXPECT_LT(max_rel_err(y, ref), 1e-5);
  }
}

TEST(Conv2D, BackwardMatchesReference) {
  for (const ConvCase& k : kConvCases) {
    const Conv2DShape s = make(k);
    auto x = random_vec(s.n * s.h * s.w * s.c, 4);
    auto w = random_vec(s.k() * s.f, 5);
    auto dz = random_vec(s.n * s.oh * s.ow * s.f, 6);
    const int64_t xs = s.n * s.h * s.w * s.c;
    std::vector<float> dx(xs), dw(s.k() * s.f), db(s.f), rdx(xs), rdw(dw.size()), rdb(s.f);
    conv2d_backward(s, x.data(), w.data(), dz.data(), dx.data(), dw.data(), db.data());
    conv2d_backward_ref<float>(s, x.data(), w.data(), dz.data(), rdx.data(), rdw.data(),
                               rdb.data());
    EXPECT_LT(max_rel_err(dx, rdx), 1e-4) << "dx, case h=" << k.h << " k=" << k.kh;
    EXPECT_LT(max_rel_err(dw, rdw), 1e-4) << "dw, case h=" << k.h << " k=" << k.kh;
    EXPECT_LT(max_rel_err(db, rdb), 1e-4) << "db, case h=" << k.h << " k=" << k.kh;
    // The first layer skips dx.
    std::vector<float> dw2(dw.size());
    conv2d_backward(s, x.data(), w.data(), dz.data(), nullptr, dw2.data(), nullptr);
    EXPECT_EQ(dw, dw2);
  }
}

TEST(Conv2D, BitIdenticalAcrossThreadCounts) {
  const Conv2DShape s = make(kConvCases[9]);
  auto x = random_vec(s.n * s.h * s.w * s.c, 7);
  auto w = random_vec(s.k() * s.f, 8);
  auto dz = random_vec(s.n * s.oh * s.ow * s.f, 9);
  const int saved = get_num_threads();
  std::vector<float> out[3];
  for (int t = 1; t <= 3; ++t) {
    set_num_threads(t);
    std::vector<float> y(s.n * s.oh * s.ow * s.f), dx(s.n * s.h * s.w * s.c), dw(s.k() * s.f),
        db(s.f);
    conv2d_forward(s, x.data(), w.data(), nullptr, y.data(), Act::Linear);
    conv2d_backward(s, x.data(), w.data(), dz.data(), dx.data(), dw.data(), db.data());
    out[t - 1] = y;
    out[t - 1].insert(out[t - 1].end(), dx.begin(), dx.end());
    out[t - 1].insert(out[t - 1].end(), dw.begin(), dw.end());
    out[t - 1].insert(out[t - 1].end(), db.begin(), db.end());
  }
  set_num_threads(saved);
  EXPECT_EQ(0, std::memcmp(out[0].data(), out[1].data(), out[0].size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(out[0].data(), out[2].data(), out[0].size() * sizeof(float)));
}

namespace {

struct PoolCase {
  int64_t n, h, w, c, ph, pw, sh, sw;
  bool same;
};

const PoolCase kPoolCases[] = {
    {2, 8, 8, 3, 2, 2, 2, 2, false}, {2, 7, 9, 5, 2, 2, 2, 2, false},
    {2, 7, 9, 5, 3, 3, 2, 2, true},  {1, 5, 5, 2, 3, 3, 1, 1, true},   // overlapping
    {3, 6, 5, 4, 3, 2, 1, 2, false}, {1, 1, 1, 7, 1, 1, 1, 1, false},
    {2, 5, 7, 3, 5, 7, 1, 1, false},  // window = whole image
    {2, 8, 7, 3, 3, 3, 2, 2, true},   // 'same' with top padding 0, left padding 1
    {1, 6, 5, 2, 2, 4, 1, 2, true},   // top 0, left 1, rectangular window
    {2, 8, 7, 3, 2, 2, 3, 3, false},  // gaps between the windows
    {2, 7, 8, 4, 3, 3, 3, 3, true},   // apart, padded on both sides
    {2, 8, 8, 32, 2, 2, 2, 2, false}, {2, 7, 9, 16, 3, 3, 2, 2, true},  // vectors of 16
    {2, 7, 9, 16, 2, 2, 2, 2, false}, {2, 7, 8, 32, 3, 3, 3, 3, true},  // apart, untiled
};

}  // namespace

TEST(Pooling, MatchesReference) {
  for (const PoolCase& k : kPoolCases)
    for (bool max : {true, false}) {
      const Pool2DShape s = pool2d_shape(k.n, k.h, k.w, k.c, k.ph, k.pw, k.sh, k.sw, k.same);
      auto x = random_vec(s.n * s.h * s.w * s.c, 10);
      x[3] = x[0];  // a tie
      auto dy = random_vec(s.n * s.oh * s.ow * s.c, 11);
      const int64_t ys = s.n * s.oh * s.ow * s.c, xs = s.n * s.h * s.w * s.c;
      // dx starts dirty: the backward writes every element
      std::vector<float> y(ys), ry(ys), dx(xs, std::nanf("")), rdx(xs);
      std::vector<int32_t> arg(ys);
      if (max) {
        maxpool2d_forward(s, x.data(), y.data(), arg.data());
        maxpool2d_backward(s, dy.data(), arg.data(), dx.data());
      } else {
        avgpool2d_forward(s, x.data(), y.data());
        avgpool2d_backward(s, dy.data(), dx.data());
      }
      pool2d_forward_ref<float>(s, max, x.data(), ry.data());
      pool2d_backward_ref<float>(s, max, x.data(), dy.data(), rdx.data());
      EXPECT_LT(max_rel_err(y, ry), 1e-6) << (max ? "max" : "avg") << " h=" << k.h;
      EXPECT_LT(max_rel_err(dx, rdx), 1e-5) << (max ? "max" : "avg") << " h=" << k.h;
    }
}

// The relu backward done by the max pool (its input came out of a relu): the gradient
// reaches the winner only where the pooled value is > 0, which equals the plain backward
// followed by the relu's derivative (0 at 0, as in Keras) on the pool's input.
TEST(Pooling, FusedReluBackwardEqualsReluAfterPoolBackward) {
  int64_t zeroed = 0;  // gradients the relu stops: the cases reach the relu's zeros
  for (const PoolCase& k : kPoolCases) {
    const Pool2DShape s = pool2d_shape(k.n, k.h, k.w, k.c, k.ph, k.pw, k.sh, k.sw, k.same);
    const int64_t ys = s.n * s.oh * s.ow * s.c, xs = s.n * s.h * s.w * s.c;
    auto x = random_vec(xs, 14);
    for (int64_t i = 0; i < xs; ++i) x[i] = x[i] > 0.3f ? x[i] : 0.f;  // relu, many zeros
    for (int64_t i = 0; i < s.w * s.c; ++i) x[i] = 0.f;  // windows that are all zero
    const auto dy = random_vec(ys, 15);
    std::vector<float> y(ys), dx(xs, std::nanf("")), rdx(xs);
    std::vector<int32_t> arg(ys);
    maxpool2d_forward(s, x.data(), y.data(), arg.data());
    maxpool2d_backward(s, dy.data(), arg.data(), dx.data(), y.data());
    pool2d_backward_ref<float>(s, true, x.data(), dy.data(), rdx.data());
    for (int64_t i = 0; i < xs; ++i) {
      if (!(x[i] > 0.f) && rdx[i] != 0.f) ++zeroed;
      if (!(x[i] > 0.f)) rdx[i] = 0.f;
    }
    EXPECT_EQ(dx, rdx) << "h=" << k.h;
  }
  EXPECT_GT(zeroed, 0);
}

TEST(Pooling, TiesGoToTheFirstMaximumAndNaNWins) {
  const Pool2DShape s = pool2d_shape(1, 2, 2, 1, 2, 2, 2, 2, false);
  std::vector<float> x = {1.f, 3.f, 3.f, 2.f}, y(1), dx(4), dy = {1.f};
  std::vector<int32_t> arg(1);
  maxpool2d_forward(s, x.data(), y.data(), arg.data());
  EXPECT_EQ(arg[0], 1);
  maxpool2d_backward(s, dy.data(), arg.data(), dx.data());
  EXPECT_EQ(dx, (std::vector<float>{0.f, 1.f, 0.f, 0.f}));
  x[2] = std::numeric_limits<float>::quiet_NaN();
  maxpool2d_forward(s, x.data(), y.data(), arg.data());
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_EQ(arg[0], 2);
  // The same in each of 16 channels (the vector path), a NaN in channel 5 only.
  const Pool2DShape v = pool2d_shape(1, 2, 2, 16, 2, 2, 2, 2, false);
  std::vector<float> xv(64), yv(16);
  std::vector<int32_t> av(16);
  const float pattern[4] = {1.f, 3.f, 3.f, 2.f};
  for (int64_t ch = 0; ch < 16; ++ch)
    for (int64_t p = 0; p < 4; ++p) xv[p * 16 + ch] = pattern[p];
  xv[2 * 16 + 5] = std::numeric_limits<float>::quiet_NaN();
  maxpool2d_forward(v, xv.data(), yv.data(), av.data());
  for (int64_t ch = 0; ch < 16; ++ch) {
    EXPECT_EQ(av[ch], ch == 5 ? 2 : 1) << "channel " << ch;
    if (ch == 5)
      EXPECT_TRUE(std::isnan(yv[ch]));
    else
      EXPECT_EQ(yv[ch], 3.f);
  }
}

TEST(Pooling, RejectsAPoolLargerThanItsInput) {
  EXPECT_THROW(pool2d_shape(1, 2, 2, 1, 3, 3, 3, 3, false), std::invalid_argument);
  EXPECT_NO_THROW(pool2d_shape(1, 2, 2, 1, 3, 3, 3, 3, true));
  EXPECT_THROW(pool2d_shape(1, 4, 4, 1, 2, 2, 0, 2, false), std::invalid_argument);
}

TEST(Pooling, GlobalMatchesWindowedOverTheWholeImage) {
  const int64_t n = 3, h = 4, w = 5, c = 6;
  auto x = random_vec(n * h * w * c, 12);
  auto dy = random_vec(n * c, 13);
  const Pool2DShape s = pool2d_shape(n, h, w, c, h, w, 1, 1, false);
  for (bool max : {true, false}) {
    std::vector<float> y(n * c), ry(n * c), dx(n * h * w * c), rdx(dx.size());
    std::vector<int32_t> arg(n * c);
    if (max) {
      global_maxpool_forward(x.data(), y.data(), arg.data(), n, h * w, c);
      global_maxpool_backward(dy.data(), arg.data(), dx.data(), n, h * w, c);
    } else {
      global_avgpool_forward(x.data(), y.data(), n, h * w, c);
      global_avgpool_backward(dy.data(), dx.data(), n, h * w, c);
    }
    pool2d_forward_ref<float>(s, max, x.data(), ry.data());
    pool2d_backward_ref<float>(s, max, x.data(), dy.data(), rdx.data());
    EXPECT_LT(max_rel_err(y, ry), 1e-6);
    EXPECT_LT(max_rel_err(dx, rdx), 1e-6);
  }
}

TEST(Graph, SmallCnnTrainsAndPlansOnce) {
  // (8, 8, 1) -> conv 4 'same' relu -> maxpool -> conv 6 -> global avg -> dense 2.
  Graph g;
  auto var = [](std::vector<int64_t> shape, uint64_t seed) {
    auto v = std::make_shared<Variable>(std::move(shape));
    auto p = random_vec(v->size(), seed, -0.5f, 0.5f);
    std::memcpy(v->data(), p.data(), p.size() * sizeof(float));
    return v;
  };
  int v = g.add_input({8, 8, 1});
  v = g.add_conv2d(v, var({3, 3, 1, 4}, 14), var({4}, 15), 1, 1, 1, 1, true, Act::Relu);
  v = g.add_pool2d(v, true, 2, 2, 2, 2, false);
  v = g.add_conv2d(v, var({3, 3, 4, 6}, 16), var({6}, 17), 1, 1, 1, 1, false, Act::Relu);
  v = g.add_global_pool(v, false, 2, false);
  v = g.add_dense(v, var({6, 2}, 18), var({2}, 19), Act::Softmax);
  g.set_outputs({v});
  EXPECT_EQ(g.output_shape(0), (std::vector<int64_t>{2}));
  OutputSpec spec;
  spec.has_loss = true;
  spec.loss = Loss::SparseCategoricalCrossentropy;
  g.set_output_spec(0, spec);
  OptimizerConfig c;
  c.kind = Opt::Adam;
  g.set_optimizer(std::make_shared<Optimizer>(c));
  const int64_t rows = 64;
  std::vector<float> x(rows * 64);
  std::vector<int32_t> labels(rows);
  for (int64_t i = 0; i < rows; ++i) {
    labels[i] = static_cast<int32_t>(i % 2);
    for (int64_t j = 0; j < 64; ++j)  // class 1: bright left half
      x[i * 64 + j] = (labels[i] && (j % 8) < 4 ? 1.f : 0.f) + 0.1f * float((i * 7 + j) % 5);
  }
  Batch b;
  b.x = {x.data()};
  b.labels = {labels.data()};
  b.y = {nullptr};
  b.rows = rows;
  b.n = rows;
  const double first = g.train_step(b, 0.01f).loss_sum;
  double last = first;
  for (int i = 0; i < 60; ++i) last = g.train_step(b, 0.01f).loss_sum;
  EXPECT_LT(last, 0.5 * first);
  EXPECT_EQ(g.allocations(), 1);
}
