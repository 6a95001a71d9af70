// test_kernels.cpp: activations, Dense, losses, dropout, Philox and optimizers
// against plain references.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "ember/activations.h"
#include "ember/checks.h"
#include "ember/dense.h"
#include "ember/dropout.h"
#include "ember/losses.h"
#include "ember/normalization.h"
#include "ember/optimizers.h"
#include "ember/variable.h"
#include "ember/parallel.h"
#include "ember/random.h"
#include "test_util.h"

using namespace ember;
using ember_test::max_rel_err;
using ember_test::random_vec;

template <class T>
std::vector<T> cast(const std::vector<float>& v) {
  return std::vector<T>(v.begin(), v.end());
}

TEST(Activations, FloatMatchesDouble) {
  for (Act a : {Act::Linear, Act::Relu, Act::Sigmoid, Act::Tanh, Act::Softmax}) {
    const int64_t r = 7, c = 13;
    auto x = random_vec(r * c, 1, -4.f, 4.f);
    x[0] = 0.f;
    std::vector<float> y(r * c);
    auto xd = cast<double>(x);
    std::vector<double> yd(r * c);
    act_forward<float>(a, x.data(), y.data(), r, c);
    act_forward<double>(a, xd.data(), yd.data(), r, c);
    EXPECT_LT(max_rel_err(y, yd), 1e-6) << act_name(a);
    auto dy = random_vec(r * c, 2);
    auto dyd = cast<double>(dy);
    std::vector<float> dx(r * c);
    std::vector<double> dxd(r * c);
    act_backward<float>(a, y.data(), dy.data(), dx.data(), r, c);
    act_backward<double>(a, yd.data(), dyd.data(), dxd.data(), r, c);
    EXPECT_LT(max_rel_err(dx, dxd), 1e-6) << act_name(a);
  }
}

TEST(Activations, SoftmaxRowsSumToOneAndSurviveLargeInputs) {
  std::vector<float> x = {1000.f, 1000.f, -1000.f, 0.f, 1.f, 2.f};
  std::vector<float> y(6);
  act_forward<float>(Act::Softmax, x.data(), y.data(), 2, 3);
  EXPECT_FLOAT_EQ(y[0], 0.5f);
  EXPECT_FLOAT_EQ(y[2], 0.f);
  EXPECT_NEAR(y[3] + y[4] + y[5], 1.f, 1e-6);
}

// Sigmoid, silu, tanh, gelu (both forms), softmax and log-softmax take sixteen floats
// at a time through polynomials: as close to the double versions as float's rounding of x - max
// allows (|x - max| ulp of it), on rows of every tail length, large vocabularies and
// far tails; NaN stays NaN.
TEST(Activations, VectorizedFloatPathsMatchDouble) {
  for (int64_t cols : {1, 15, 16, 17, 5000}) {
    const int64_t rows = 3;
    auto x = random_vec(rows * cols, 5, -30.f, 30.f);
    x[0] = -100.f;
    if (cols > 2) x[1] = 95.f;
    auto xd = cast<double>(x);
    for (Act a : {Act::Sigmoid, Act::Silu, Act::Tanh, Act::Gelu, Act::GeluApprox,
                  Act::Softmax, Act::LogSoftmax}) {
      std::vector<float> y(x.size());
      std::vector<double> yd(x.size());
      act_forward<float>(a, x.data(), y.data(), rows, cols);
      act_forward<double>(a, xd.data(), yd.data(), rows, cols);
      for (size_t i = 0; i < y.size(); ++i)
        // log-softmax: x - lse, an ulp of |x| ~ 30; gelu: 1 + erf (tanh) cancels far left
        ASSERT_NEAR(y[i], yd[i],
                    6e-6 * std::fabs(yd[i]) + (a == Act::LogSoftmax ? 4e-6
                                               : a == Act::Gelu || a == Act::GeluApprox
                                                   ? 1e-6
                                                   : 1e-30))
            << act_name(a) << " cols " << cols << " at " << i;
    }
  }
  // The gelu derivatives (erf, e^x and tanh of x) likewise.
  auto x = random_vec(1000, 8, -6.f, 6.f), dy = random_vec(1000, 9);
  auto xd = cast<double>(x), dyd = cast<double>(dy);
  for (Act a : {Act::Gelu, Act::GeluApprox}) {
    std::vector<float> y(1000), dx(1000);
    std::vector<double> yd(1000), dxd(1000);
    act_forward<float>(a, x.data(), y.data(), 10, 100);
    act_forward<double>(a, xd.data(), yd.data(), 10, 100);
    act_backward<float>(a, y.data(), dy.data(), dx.data(), 10, 100, kDefaultAlpha, x.data());
    act_backward<double>(a, yd.data(), dyd.data(), dxd.data(), 10, 100, kDefaultAlpha,
                         xd.data());
    for (int64_t i = 0; i < 1000; ++i)
      ASSERT_NEAR(dx[i], dxd[i], 2e-6 * std::fabs(dxd[i]) + 1e-6) << act_name(a) << " " << i;
  }
  std::vector<float> xn = {1.f, std::numeric_limits<float>::quiet_NaN(), 2.f}, yn(3);
  for (Act a : {Act::Sigmoid, Act::Tanh, Act::Softmax}) {
    act_forward<float>(a, xn.data(), yn.data(), 1, 3);
    EXPECT_TRUE(std::isnan(yn[1])) << act_name(a);
  }
}

TEST(Activations, UnknownNameThrows) {
  EXPECT_THROW(act_from_string("swishy"), std::invalid_argument);
}

TEST(Dense, FastMatchesReference) {
  struct S { int64_t n, in, out; };
  for (S s : {S{1, 1, 1}, S{1, 64, 10}, S{7, 13, 5}, S{32, 257, 17}, S{128, 784, 512}}) {
    for (Act a : {Act::Linear, Act::Relu, Act::Softmax}) {
      auto x = random_vec(s.n * s.in, 1), w = random_vec(s.in * s.out, 2),
           b = random_vec(s.out, 3);
      std::vector<float> y(s.n * s.out), r(s.n * s.out);
      dense_forward(x.data(), w.data(), b.data(), y.data(), s.n, s.in, s.out, a);
      dense_forward_ref<float>(x.data(), w.data(), b.data(), r.data(), s.n, s.in, s.out, a);
      EXPECT_LT(max_rel_err(y, r), 1e-4) << s.n << "x" << s.in << "x" << s.out;
    }
    auto x = random_vec(s.n * s.in, 4), w = random_vec(s.in * s.out, 5),
         dz = random_vec(s.n * s.out, 6);
    std::vector<float> dx(s.n * s.in), dw(s.in * s.out), db(s.out);
    std::vector<float> rdx(s.n * s.in), rdw(s.in * s.out), rdb(s.out);
    dense_backward(x.data(), w.data(), dz.data(), dx.data(), dw.data(), db.data(), s.n, s.in,
                   s.out);
    dense_backward_ref<float>(x.data(), w.data(), dz.data(), rdx.data(), rdw.data(), rdb.data(),
                              s.n, s.in, s.out);
    EXPECT_LT(max_rel_err(dx, rdx), 1e-4);
    EXPECT_LT(max_rel_err(dw, rdw), 1e-4);
    EXPECT_LT(max_rel_err(db, rdb), 1e-5);
  }
}

TEST(Losses, FloatMatchesDoubleForEveryLoss) {
  const int64_t n = 6, c = 5;
  auto logits = random_vec(n * c, 1, -3.f, 3.f);
  std::vector<float> probs(n * c);
  act_forward<float>(Act::Softmax, logits.data(), probs.data(), n, c);
  std::vector<int32_t> labels = {0, 4, 2, 1, 3, 3};
  std::vector<float> onehot(n * c, 0.f);
  for (int64_t i = 0; i < n; ++i) onehot[i * c + labels[i]] = 1.f;
  for (Loss l : {Loss::SparseCategoricalCrossentropy, Loss::CategoricalCrossentropy,
                 Loss::BinaryCrossentropy, Loss::MeanSquaredError})
    for (bool logit : {false, true}) {
      const auto& out = logit ? logits : probs;
      auto outd = cast<double>(out), yd = cast<double>(onehot);
      std::vector<float> g(n * c);
      std::vector<double> gd(n * c);
      const double s = loss_forward_backward<float>(l, logit, Act::Linear, out.data(),
                                                    labels.data(), onehot.data(), nullptr,
                                                    g.data(), n, c, 1.f);
      const double sd = loss_forward_backward<double>(l, logit, Act::Linear, outd.data(),
                                                      labels.data(), yd.data(), nullptr,
                                                      gd.data(), n, c, 1.0);
      EXPECT_NEAR(s, sd, 1e-5 * (1 + std::fabs(sd)));
      EXPECT_LT(max_rel_err(g, gd), 1e-5);
    }
}

// Binary crossentropy of probabilities takes its logs sixteen at a time (logv): each
// row's value within 1e-6 of the same expression with std::log in double, across
// (0, 1), clipped values beyond [eps, 1 - eps], tails of every length and rows over
// the threads; NaN stays NaN.
TEST(Losses, BinaryCrossentropyOfProbabilitiesMatchesDouble) {
  const int64_t n = 480, c = 37;
  auto p = random_vec(n * c, 3, 0.f, 1.f);
  for (int64_t i = 0; i < n * c; i += 7) p[i] = std::pow(10.f, -9.f * p[i]);  // to 1e-9
  for (int64_t i = 3; i < n * c; i += 11) p[i] = 1.f - std::pow(10.f, -8.f * p[i]);
  p[0] = 0.f;
  p[1] = 1.f;
  auto y = random_vec(n * c, 4, 0.f, 1.f);
  for (int64_t cols : {int64_t(1), int64_t(15), int64_t(17), c}) {
    const int64_t rows = n * c / cols;
    std::vector<float> per(rows);
    for (float keep : {1.f, 0.8f}) {  // 1 - label_smoothing
      loss_forward<float>(Loss::BinaryCrossentropy, false, p.data(), nullptr, y.data(),
                          nullptr, rows, cols, keep, per.data());
      const float lo = 1e-7f, hi = 1.f - 1e-7f;
      for (int64_t i = 0; i < rows; ++i) {
        double want = 0;
        for (int64_t j = i * cols; j < (i + 1) * cols; ++j) {
          const float pc = p[j] < lo ? lo : (p[j] > hi ? hi : p[j]);
          const float t = y[j] * keep + (1.f - keep) / 2.f;
          want -= t * std::log(double(pc)) + (1.f - t) * std::log(double(1.f - pc));
        }
        want /= cols;
        ASSERT_NEAR(per[i], want, 1e-6 * (1 + std::fabs(want))) << "row " << i;
      }
    }
  }
  p[5] = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> per(n);
  loss_forward<float>(Loss::BinaryCrossentropy, false, p.data(), nullptr, y.data(), nullptr,
                      n, c, 1.f, per.data());
  EXPECT_TRUE(std::isnan(per[0]));
  EXPECT_FALSE(std::isnan(per[1]));
}

// The crossentropies from logits take e^x sixteen at a time: values and gradients
// against double on wide rows (a 5,000-class output), with label smoothing.
TEST(Losses, CrossentropyFromLogitsOnWideRowsMatchesDouble) {
  for (int64_t c : {2, 17, 5000}) {
    const int64_t n = 9;
    auto z = random_vec(n * c, 6, -20.f, 20.f);
    auto y = random_vec(n * c, 7, 0.f, 1.f);  // each row a distribution
    for (int64_t i = 0; i < n; ++i) {
      double sum = 0;
      for (int64_t j = 0; j < c; ++j) sum += y[i * c + j];
      for (int64_t j = 0; j < c; ++j) y[i * c + j] = static_cast<float>(y[i * c + j] / sum);
    }
    std::vector<int32_t> labels(n);
    for (int64_t i = 0; i < n; ++i) labels[i] = static_cast<int32_t>((i * 31) % c);
    auto zd = cast<double>(z), yd = cast<double>(y);
    for (Loss l : {Loss::SparseCategoricalCrossentropy, Loss::CategoricalCrossentropy}) {
      std::vector<float> g(n * c);
      std::vector<double> gd(n * c);
      const double v = loss_forward_backward<float>(l, true, Act::Linear, z.data(),
                                                    labels.data(), y.data(), nullptr,
                                                    g.data(), n, c, 0.5f, 0.9f);
      const double vd = loss_forward_backward<double>(l, true, Act::Linear, zd.data(),
                                                      labels.data(), yd.data(), nullptr,
                                                      gd.data(), n, c, 0.5, 0.9);
      EXPECT_NEAR(v, vd, 1e-5 * std::fabs(vd)) << "c " << c;
      for (int64_t i = 0; i < n * c; ++i)
        ASSERT_NEAR(g[i], gd[i], 2e-6 * std::fabs(gd[i]) + 1e-7) << "c " << c << " at " << i;
    }
  }
}

TEST(Losses, FusedSoftmaxGradientIsPMinusY) {
  const int64_t n = 3, c = 4;
  auto z = random_vec(n * c, 2);
  std::vector<float> p(n * c), g(n * c);
  act_forward<float>(Act::Softmax, z.data(), p.data(), n, c);
  std::vector<int32_t> labels = {1, 0, 3};
  loss_forward_backward<float>(Loss::SparseCategoricalCrossentropy, false, Act::Softmax,
                               p.data(), labels.data(), nullptr, nullptr, g.data(), n, c, 1.f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < c; ++j)
      EXPECT_NEAR(g[i * c + j], p[i * c + j] - (j == labels[i] ? 1.f : 0.f), 1e-6);
}

TEST(Losses, LabelOutOfRangeThrows) {
  std::vector<float> p(4, 0.5f), g(4);
  std::vector<int32_t> labels = {0, 2};
  EXPECT_THROW(loss_forward_backward<float>(Loss::SparseCategoricalCrossentropy, false,
                                            Act::Linear, p.data(), labels.data(), nullptr,
                                            nullptr, g.data(), 2, 2, 1.f),
               std::invalid_argument);
}

TEST(Random, PhiloxKnownAnswer) {
  // Random123's known-answer vector for philox4x32_10 with zero counter and key.
  uint32_t c[4] = {0, 0, 0, 0};
  philox4x32(c, 0, 0);
  EXPECT_EQ(c[0], 0x6627e8d5u);
  EXPECT_EQ(c[1], 0xe169c58du);
  EXPECT_EQ(c[2], 0xbc57ac4cu);
  EXPECT_EQ(c[3], 0x9b00dbd8u);
}

TEST(Random, UniformFillIsThreadIndependentAndInRange) {
  const int64_t n = 300001;
  std::vector<float> a(n), b(n);
  const int saved = get_num_threads();
  set_num_threads(1);
  fill_uniform(a.data(), n, -2.f, 3.f, 42, 7);
  set_num_threads(2);
  fill_uniform(b.data(), n, -2.f, 3.f, 42, 7);
  set_num_threads(saved);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), sizeof(float) * n));
  double mean = 0;
  for (float v : a) {
    ASSERT_GE(v, -2.f);
    ASSERT_LT(v, 3.f);
    mean += v;
  }
  EXPECT_NEAR(mean / n, 0.5, 0.02);
}

// The fill (sixteen Philox blocks at a time with AVX-512, eight with AVX2) gives every
// element exactly what the one-element function does: seeds and streams with high bits
// set, lengths that end inside a block, inside a group of eight or sixteen, and after
// several threads' groups.
TEST(Random, UniformFillMatchesElementwise) {
  const uint64_t seed = 0x9E3779B97F4A7C15ull, stream = 0xD1B54A32D192ED03ull;
  const float lo = -0.75f, hi = 1.25f, span = hi - lo;
  for (int64_t n : {1, 3, 31, 32, 33, 64, 95, 96, 129, 259, 100003}) {
    std::vector<float> out(n);
    fill_uniform(out.data(), n, lo, hi, seed, stream);
    for (int64_t i = 0; i < n; ++i) {
      const float want = lo + span * philox_uniform(seed, stream, static_cast<uint64_t>(i));
      ASSERT_EQ(want, out[i]) << "n " << n << ", element " << i;
    }
  }
}

TEST(Dropout, KeepsExpectedFractionAndScales) {
  const int64_t n = 100000;
  std::vector<float> x(n, 1.f), y(n), mask(n), dx(n);
  dropout_forward(x.data(), y.data(), mask.data(), n, 0.25f, 9, 1);
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (y[i] != 0.f) {
      ++kept;
      EXPECT_FLOAT_EQ(y[i], 1.f / 0.75f);
    }
  }
  EXPECT_NEAR(double(kept) / n, 0.75, 0.01);
  dropout_backward(x.data(), mask.data(), dx.data(), n);
  EXPECT_EQ(0, std::memcmp(dx.data(), y.data(), sizeof(float) * n));
  // A different step draws a different mask.
  std::vector<float> y2(n), mask2(n);
  dropout_forward(x.data(), y2.data(), mask2.data(), n, 0.25f, 9, 2);
  EXPECT_NE(0, std::memcmp(y.data(), y2.data(), sizeof(float) * n));
}

// Keras's rule: eps is added to sqrt(v) before the bias correction folded into alpha.
// Gradients from 1e-7 up make eps matter: PyTorch's position (eps after correcting
// sqrt(v)) or eps inside the sqrt move these updates by 30% to 1000x, far beyond the
// 1e-5 relative error allowed (float32 against float64 reaches about 3e-7).
TEST(Optimizers, AdamMatchesKerasRuleInDouble) {
  const int n = 7;
  std::vector<float> w(n, 0.f), m(n), v(n);
  std::vector<double> wd(n, 0.0), md(n), vd(n);
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-7;
  const float g0[n] = {1e-7f, -3e-7f, 2e-6f, -1e-5f, 1e-3f, 0.1f, -0.3f};
  for (int t = 1; t <= 3; ++t) {
    std::vector<float> g(n);
    for (int i = 0; i < n; ++i) g[i] = g0[i] * (t == 2 ? 0.5f : 1.f);
    adam_update(w.data(), g.data(), m.data(), v.data(), nullptr, n, float(lr), float(b1),
                float(b2), float(eps), t);
    const double alpha = lr * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t));
    for (int i = 0; i < n; ++i) {
      md[i] += (g[i] - md[i]) * (1 - b1);
      vd[i] += (double(g[i]) * g[i] - vd[i]) * (1 - b2);
      wd[i] -= alpha * md[i] / (std::sqrt(vd[i]) + eps);
    }
    for (int i = 0; i < n; ++i)
      EXPECT_NEAR(w[i], wd[i], 1e-5 * std::abs(wd[i])) << "step " << t << " g " << g[i];
  }
}

// The vectorized Adam loop (the running vector family's variant) gives the bits of the
// element-by-element rule, which a clip that never binds selects; with AdamW's decay too.
TEST(Optimizers, AdamVectorLoopMatchesElementRule) {
  const int64_t n = 100003;  // several chunks and threads, and a ragged end
  const auto w0 = random_vec(n, 21), g = random_vec(n, 22);
  for (float decay : {0.f, 0.01f}) {
    std::vector<float> w[2] = {w0, w0}, m[2], v[2];
    for (int k = 0; k < 2; ++k) {
      m[k].assign(n, 0.f);
      v[k].assign(n, 0.f);
      GradPrep p;
      p.decay = decay;
      if (k == 1) p.clipvalue = 1e30f;  // element by element, same arithmetic
      for (int t = 1; t <= 3; ++t)
        adam_update(w[k].data(), g.data(), m[k].data(), v[k].data(), nullptr, n, 0.01f, 0.9f,
                    0.999f, 1e-7f, t, p);
    }
    EXPECT_EQ(0, std::memcmp(w[0].data(), w[1].data(), sizeof(float) * n)) << decay;
    EXPECT_EQ(0, std::memcmp(m[0].data(), m[1].data(), sizeof(float) * n)) << decay;
    EXPECT_EQ(0, std::memcmp(v[0].data(), v[1].data(), sizeof(float) * n)) << decay;
  }
}

TEST(Optimizers, SgdMomentumAndNesterov) {
  for (bool nesterov : {false, true}) {
    std::vector<float> w = {1.f}, m = {0.f};
    double wd = 1, md = 0;
    for (int t = 0; t < 3; ++t) {
      std::vector<float> g = {0.5f * (t + 1)};
      sgd_update(w.data(), g.data(), m.data(), 1, 0.1f, 0.9f, nesterov);
      md = 0.9 * md - 0.1 * g[0];
      wd += nesterov ? 0.9 * md - 0.1 * g[0] : md;
    }
    EXPECT_NEAR(w[0], wd, 1e-6);
  }
}

TEST(Optimizers, RmspropMatchesKerasRule) {
  std::vector<float> w = {1.f, -2.f}, v(2);
  std::vector<double> wd = {1, -2}, vd(2);
  for (int t = 0; t < 3; ++t) {
    std::vector<float> g = {0.3f, -0.7f * (t + 1)};
    rmsprop_update(w.data(), g.data(), v.data(), nullptr, nullptr, 2, 0.01f, 0.9f, 0.f, 1e-7f);
    for (int i = 0; i < 2; ++i) {
      vd[i] = 0.9 * vd[i] + 0.1 * double(g[i]) * g[i];
      wd[i] -= 0.01 * g[i] / std::sqrt(vd[i] + 1e-7);
    }
  }
  for (int i = 0; i < 2; ++i) EXPECT_NEAR(w[i], wd[i], 1e-6);
}

TEST(Optimizers, AdagradMatchesKerasRule) {
  std::vector<float> w = {1.f, -2.f}, acc = {0.1f, 0.1f};
  std::vector<double> wd = {1, -2}, ad = {0.1, 0.1};
  for (int t = 0; t < 3; ++t) {
    std::vector<float> g = {0.3f, -0.7f * (t + 1)};
    adagrad_update(w.data(), g.data(), acc.data(), 2, 0.05f, 1e-7f);
    for (int i = 0; i < 2; ++i) {
      ad[i] += double(g[i]) * g[i];
      wd[i] -= 0.05 * g[i] / std::sqrt(ad[i] + 1e-7);
    }
  }
  for (int i = 0; i < 2; ++i) EXPECT_NEAR(w[i], wd[i], 1e-6);
}

TEST(Optimizers, SumSquaresIsThreadCountIndependent) {
  std::vector<float> x(300001);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37 * i);
  set_num_threads(1);
  const double one = sum_squares(x.data(), x.size());
  set_num_threads(2);
  const double two = sum_squares(x.data(), x.size());
  EXPECT_EQ(one, two);
  double ref = 0;
  for (float v : x) ref += double(v) * v;
  EXPECT_NEAR(one, ref, 1e-9 * ref);
}

// The optimizer's variables, each with its own storage, gradient and slots.
struct OptFixture {
  std::vector<VariablePtr> vars;
  std::vector<std::vector<float>> grads;
  std::vector<OptVar> list;
  OptFixture(Optimizer& opt, const std::vector<std::vector<float>>& w,
             const std::vector<std::vector<float>>& g)
      : grads(g) {
    for (size_t k = 0; k < w.size(); ++k) {
      vars.push_back(std::make_shared<Variable>(std::vector<int64_t>{int64_t(w[k].size())}));
      std::copy(w[k].begin(), w[k].end(), vars[k]->data());
    }
    for (size_t k = 0; k < w.size(); ++k) {
      OptVar v;
      v.var = vars[k].get();
      v.grad = grads[k].data();
      v.slots = &opt.slots_for(vars[k]);
      list.push_back(v);
    }
  }
  float at(size_t k, int64_t i) const { return vars[k]->data()[i]; }
};

// Global clipping scales every gradient by clip / norm; clipnorm acts per variable;
// variables left out of the list (frozen) are neither counted nor touched, and get no
// slots.
TEST(Optimizers, ClippingAndFrozenVariables) {
  const std::vector<std::vector<float>> w0 = {{1, 2}, {5}};
  const std::vector<std::vector<float>> g = {{3, 4}, {1}};
  OptimizerConfig c;
  c.kind = Opt::SGD;
  c.global_clipnorm = 1.f;
  Optimizer opt(c);
  OptFixture f(opt, w0, g);
  auto frozen = std::make_shared<Variable>(std::vector<int64_t>{2});
  frozen->data()[0] = 3;
  opt.apply(f.list, 1.f);
  const double norm = std::sqrt(9.0 + 16.0 + 1.0);
  EXPECT_NEAR(f.at(0, 0), 1 - 3 / norm, 1e-6);
  EXPECT_NEAR(f.at(0, 1), 2 - 4 / norm, 1e-6);
  EXPECT_NEAR(f.at(1, 0), 5 - 1 / norm, 1e-6);
  EXPECT_EQ(frozen->data()[0], 3.f);
  EXPECT_EQ(opt.find_slots(frozen.get()), nullptr);
  EXPECT_EQ(opt.iterations, 1);

  c.global_clipnorm = 0.f;
  c.clipnorm = 2.f;
  Optimizer per_var(c);
  OptFixture h(per_var, w0, g);
  per_var.apply(h.list, 1.f);
  EXPECT_NEAR(h.at(0, 0), 1 - 3 * 2 / 5.0, 1e-6);  // norm 5 > 2: scaled
  EXPECT_NEAR(h.at(1, 0), 5 - 1, 1e-6);            // norm 1 <= 2: unchanged
}

// Slots are keyed by variable: a second list naming the same variable finds the same
// slots, so two models sharing a layer and an optimizer share its state.
TEST(Optimizers, SlotsBelongToVariables) {
  OptimizerConfig c;
  c.kind = Opt::Adam;
  Optimizer opt(c);
  auto v = std::make_shared<Variable>(std::vector<int64_t>{3});
  auto& a = opt.slots_for(v);
  auto& b = opt.slots_for(v);
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].size(), 3);
  EXPECT_EQ(opt.tracked().size(), 1u);
}

TEST(Checks, FirstNonFiniteFindsTheFirstBadValueInAnyBlock) {
  std::vector<float> x(10000, 1.5f);
  EXPECT_EQ(first_nonfinite(x.data(), 0), -1);
  EXPECT_EQ(first_nonfinite(x.data(), static_cast<int64_t>(x.size())), -1);
  x[9999] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(first_nonfinite(x.data(), 10000), 9999);
  EXPECT_EQ(first_nonfinite(x.data(), 9999), -1);
  x[4100] = -std::numeric_limits<float>::infinity();
  x[5000] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(first_nonfinite(x.data(), 10000), 4100);
  x[3] = std::nanf("");
  EXPECT_EQ(first_nonfinite(x.data(), 10000), 3);
  const float edge[] = {std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                        std::numeric_limits<float>::denorm_min(), -0.f};
  EXPECT_EQ(first_nonfinite(edge, 4), -1);
}

// Adamax, Nadam, Lion and Adadelta against their Keras rules computed element by
// element in double, three steps from zero weights and slots (float32 against float64:
// 1e-5 of the change).
TEST(Optimizers, NewRulesMatchKerasInDouble) {
  const int n = 6;
  const float g0[n] = {1e-4f, -3e-3f, 0.02f, -0.1f, 0.5f, -1.5f};
  const double lr = 0.01, b1 = 0.9, b2 = 0.99, rho = 0.95, eps = 1e-7;
  for (Opt kind : {Opt::Adamax, Opt::Nadam, Opt::Lion, Opt::Adadelta}) {
    std::vector<float> w(n, 0.f), s0(n, 0.f), s1(n, 0.f);
    std::vector<double> wd(n, 0.0), a(n, 0.0), b(n, 0.0);
    double product = 1;
    for (int t = 1; t <= 3; ++t) {
      std::vector<float> g(n);
      for (int i = 0; i < n; ++i) g[i] = g0[i] * (t == 2 ? -0.5f : 1.f);
      optimizer_step(kind, w.data(), g.data(), s0.data(), s1.data(), n, float(lr), float(b1),
                     float(b2), float(rho), float(eps), t);
      auto mu = [&](int s) { return b1 * (1 - 0.5 * std::pow(0.96, s)); };
      product *= mu(t);
      for (int i = 0; i < n; ++i) {
        const double gi = g[i];
        switch (kind) {
          case Opt::Adamax:
            a[i] += (gi - a[i]) * (1 - b1);
            b[i] = std::max(b2 * b[i], std::abs(gi));
            wd[i] -= lr * a[i] / ((1 - std::pow(b1, t)) * (b[i] + eps));
            break;
          case Opt::Nadam: {
            a[i] += (gi - a[i]) * (1 - b1);
            b[i] += (gi * gi - b[i]) * (1 - b2);
            const double m_hat = mu(t + 1) * a[i] / (1 - product * mu(t + 1)) +
                                 (1 - mu(t)) * gi / (1 - product);
            wd[i] -= lr * m_hat / (std::sqrt(b[i] / (1 - std::pow(b2, t))) + eps);
            break;
          }
          case Opt::Lion: {
            const double c = b1 * a[i] + (1 - b1) * gi;
            wd[i] -= lr * (c > 0 ? 1 : (c < 0 ? -1 : 0));
            a[i] = b2 * a[i] + (1 - b2) * gi;
            break;
          }
          default: {  // Adadelta
            a[i] = rho * a[i] + (1 - rho) * gi * gi;
            const double d = -std::sqrt(b[i] + eps) * gi / std::sqrt(a[i] + eps);
            b[i] = rho * b[i] + (1 - rho) * d * d;
            wd[i] += lr * d;
          }
        }
      }
      for (int i = 0; i < n; ++i)
        EXPECT_NEAR(w[i], wd[i], 1e-5 * std::abs(wd[i]) + 1e-12)
            << static_cast<int>(kind) << " step " << t << " g " << g[i];
    }
  }
}

// Batch normalization: the fast kernels against the plain reference on awkward sizes
// (one row, a block boundary), and the same bits for 1 and 2 threads.
TEST(BatchNorm, MatchesReferenceAndIsThreadCountIndependent) {
  const int saved = get_num_threads();
  for (int64_t rows : {1, 63, 64, 65, 700, 4000}) {  // 4000 x 17: the parallel path
    for (int64_t c : {1, 3, 17}) {
      const auto x = random_vec(rows * c, 1, -2.f, 3.f);
      const auto dy = random_vec(rows * c, 2);
      const auto gamma = random_vec(c, 3, 0.5f, 1.5f), beta = random_vec(c, 4);
      std::vector<float> ry(rows * c), rdx(rows * c), rdg(c), rdb(c);
      batchnorm_forward_ref<float>(x.data(), ry.data(), rows, c, gamma.data(), beta.data(), 1e-3f);
      batchnorm_backward_ref<float>(x.data(), dy.data(), rdx.data(), rows, c, gamma.data(), 1e-3f,
                                    rdg.data(), rdb.data());
      std::vector<std::vector<float>> outs;
      for (int threads : {1, 2}) {
        set_num_threads(threads);
        std::vector<float> y(rows * c), dx(rows * c), dg(c), db(c), mean(c), is(c);
        std::vector<float> mm(c, 0.f), mv(c, 1.f);
        std::vector<double> scratch(batchnorm_scratch(rows, c));
        batchnorm_forward_train(x.data(), y.data(), rows, c, gamma.data(), beta.data(), 1e-3f,
                                0.9f, mm.data(), mv.data(), mean.data(), is.data(),
                                scratch.data());
        batchnorm_backward_train(x.data(), dy.data(), dx.data(), rows, c, gamma.data(),
                                 mean.data(), is.data(), dg.data(), db.data(), scratch.data());
        for (int64_t i = 0; i < rows * c; ++i) {
          EXPECT_NEAR(y[i], ry[i], 2e-5f * (1 + std::abs(ry[i])));
          EXPECT_NEAR(dx[i], rdx[i], 2e-4f * (1 + std::abs(rdx[i])));
        }
        for (int64_t j = 0; j < c; ++j) {
          EXPECT_NEAR(dg[j], rdg[j], 1e-4f * (1 + std::abs(rdg[j])));
          EXPECT_NEAR(db[j], rdb[j], 1e-4f * (1 + std::abs(rdb[j])));
        }
        y.insert(y.end(), dx.begin(), dx.end());
        y.insert(y.end(), mv.begin(), mv.end());
        outs.push_back(y);
      }
      EXPECT_EQ(outs[0], outs[1]) << rows << "x" << c;
    }
  }
  set_num_threads(saved);
}
