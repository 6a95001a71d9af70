// test_vector_isa.cpp: every vector family (vector_isa.h) computes the same bits as the
// portable one, loop by loop, on shapes with vector tails; the families this CPU lacks
// are skipped. The GEMM kernel stays the same throughout (EMBER_GEMM_KERNEL is its own
// switch).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "ember/activations.h"
#include "ember/conv2d.h"
#include "ember/dense.h"
#include "ember/embedding.h"
#include "ember/gemm.h"
#include "ember/losses.h"
#include "ember/metrics.h"
#include "ember/normalization.h"
#include "ember/optimizers.h"
#include "ember/pooling.h"
#include "ember/random.h"
#include "ember/vector_isa.h"
#include "test_util.h"

using namespace ember;
using ember_test::random_vec;

namespace {

using Bytes = std::vector<unsigned char>;

template <class T>
void append(Bytes& out, const std::vector<T>& v) {
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  out.insert(out.end(), p, p + v.size() * sizeof(T));
}

// Runs f under the portable family, then under each wider one the CPU has, and
// expects the same bytes; restores the running family.
void expect_same_bits(const std::function<Bytes()>& f) {
  const VectorIsa before = vector_isa();
  set_vector_isa(VectorIsa::Generic);
  const Bytes want = f();
  ASSERT_FALSE(want.empty());
  for (VectorIsa isa : {VectorIsa::Avx2, VectorIsa::Avx512}) {
    if (isa > best_vector_isa()) continue;
    set_vector_isa(isa);
    const Bytes got = f();
    EXPECT_TRUE(got == want) << "the " << vector_isa_name(isa)
                             << " loops differ from the portable ones";
  }
  set_vector_isa(before);
}

}  // namespace

TEST(VectorIsa, NamesTheRunningFamilyAndRefusesOneTheCpuLacks) {
  EXPECT_LE(vector_isa(), best_vector_isa());
  EXPECT_STREQ(vector_isa_name(VectorIsa::Avx512), "avx512");
  if (best_vector_isa() < VectorIsa::Avx512) {
    EXPECT_THROW(set_vector_isa(VectorIsa::Avx512), std::invalid_argument);
  }
  EXPECT_THROW(set_vector_isa(static_cast<VectorIsa>(7)), std::invalid_argument);
}

TEST(VectorIsa, ActivationsForwardAndBackward) {
  const int64_t rows = 9, cols = 45;  // tails for 4, 8 and 16 lanes
  const auto x = random_vec(rows * cols, 1, -6.f, 6.f);
  const auto dy = random_vec(rows * cols, 2);
  for (int a = 0; a <= static_cast<int>(Act::HardSilu); ++a) {
    const Act act = static_cast<Act>(a);
    expect_same_bits([&] {
      std::vector<float> y(x.size()), dx(x.size());
      act_forward<float>(act, x.data(), y.data(), rows, cols);
      act_backward<float>(act, y.data(), dy.data(), dx.data(), rows, cols, kDefaultAlpha,
                          x.data());
      Bytes out;
      append(out, y);
      append(out, dx);
      return out;
    });
  }
}

TEST(VectorIsa, PoolingWindowedAndGlobal) {
  // 2x2/2 tiling, 3x3/2 'same' (overlapping, padded) and 2x3/3 with gaps.
  const int64_t geo[][5] = {{2, 2, 2, 2, 0}, {3, 3, 2, 2, 1}, {2, 3, 3, 3, 0}};
  for (const auto& g : geo)
    for (int64_t c : {19, 32}) {  // (32: the max pooling's vector path)
      const Pool2DShape s = pool2d_shape(3, 12, 11, c, g[0], g[1], g[2], g[3], g[4] != 0);
      const auto x = random_vec(s.n * s.h * s.w * s.c, 3);
      const auto dy = random_vec(s.n * s.oh * s.ow * s.c, 4);
      expect_same_bits([&] {
        std::vector<float> y(dy.size()), ya(dy.size()), dx(x.size()), dxr(x.size()),
            dxa(x.size());
        std::vector<int32_t> arg(dy.size());
        maxpool2d_forward(s, x.data(), y.data(), arg.data());
        maxpool2d_backward(s, dy.data(), arg.data(), dx.data(), nullptr);
        maxpool2d_backward(s, dy.data(), arg.data(), dxr.data(), y.data());
        avgpool2d_forward(s, x.data(), ya.data());
        avgpool2d_backward(s, dy.data(), dxa.data());
        Bytes out;
        append(out, y);
        append(out, arg);
        append(out, dx);
        append(out, dxr);
        append(out, ya);
        append(out, dxa);
        return out;
      });
    }
  const int64_t n = 4, hw = 23, c = 37;
  const auto x = random_vec(n * hw * c, 5);
  const auto dy = random_vec(n * c, 6);
  std::vector<float> mask(n * hw, 1.f);
  for (int64_t i = 0; i < n * hw; i += 3) mask[i] = 0.f;
  for (int64_t p = 0; p < hw; ++p) mask[3 * hw + p] = 0.f;  // a sample with no step
  expect_same_bits([&] {
    Bytes out;
    for (const float* m : {static_cast<const float*>(nullptr), static_cast<const float*>(mask.data())}) {
      std::vector<float> ymax(n * c), yavg(n * c), dxavg(x.size());
      std::vector<int32_t> arg(n * c);
      global_maxpool_forward(x.data(), ymax.data(), arg.data(), n, hw, c, m);
      global_avgpool_forward(x.data(), yavg.data(), n, hw, c, m);
      global_avgpool_backward(dy.data(), dxavg.data(), n, hw, c, m);
      append(out, ymax);
      append(out, arg);
      append(out, yavg);
      append(out, dxavg);
    }
    return out;
  });
}

TEST(VectorIsa, BatchNormalizationTraining) {
  const int64_t rows = 150, c = 35;
  const auto x = random_vec(rows * c, 7, -3.f, 5.f);
  const auto dy = random_vec(rows * c, 8);
  const auto gamma = random_vec(c, 9, 0.5f, 1.5f), beta = random_vec(c, 10);
  expect_same_bits([&] {
    std::vector<float> y(x.size()), dx(x.size()), mm(c, 0.f), mv(c, 1.f), mean(c), inv(c),
        dg(c), db(c);
    std::vector<double> scratch(batchnorm_scratch(rows, c));
    batchnorm_forward_train(x.data(), y.data(), rows, c, gamma.data(), beta.data(), 1e-3f,
                            0.99f, mm.data(), mv.data(), mean.data(), inv.data(),
                            scratch.data());
    batchnorm_backward_train(x.data(), dy.data(), dx.data(), rows, c, gamma.data(),
                             mean.data(), inv.data(), dg.data(), db.data(), scratch.data());
    Bytes out;
    for (const auto* v : {&y, &dx, &mm, &mv, &mean, &inv, &dg, &db}) append(out, *v);
    return out;
  });
}

TEST(VectorIsa, BiasSumsCol2imAndTheGemmEpilogue) {
  const int64_t rows = 301, cols = 77;
  const auto dz = random_vec(rows * cols, 11);
  // A strided convolution's input gradient goes through col2im; so does a valid one's
  // over 32 channels (whole vectors).
  const Conv2DShape s = conv2d_shape(2, 9, 10, 5, 3, 3, 6, 2, 2, 1, 1, false);
  const auto x = random_vec(s.n * s.h * s.w * s.c, 12);
  const auto w = random_vec(s.kh * s.kw * s.c * s.f, 13);
  const auto dzc = random_vec(s.n * s.oh * s.ow * s.f, 14);
  const Conv2DShape s32 = conv2d_shape(2, 9, 9, 32, 3, 3, 8, 1, 1, 1, 1, false);
  const auto w32 = random_vec(s32.kh * s32.kw * s32.c * s32.f, 22);
  const auto dz32 = random_vec(s32.n * s32.oh * s32.ow * s32.f, 23);
  const auto bias = random_vec(cols, 15), scale = random_vec(cols, 20),
             shift = random_vec(cols, 21);
  expect_same_bits([&] {
    std::vector<float> sums(cols), db(cols), dx(x.size()), dw(w.size()), dbc(s.f);
    column_sums(dz.data(), rows, cols, cols, sums.data(), false);
    bias_grad(dz.data(), rows, cols, db.data());
    std::vector<float> db80(80);  // whole vectors of columns
    bias_grad(dz.data(), rows * cols / 80, 80, db80.data());
    conv2d_backward(s, x.data(), w.data(), dzc.data(), dx.data(), dw.data(), dbc.data());
    std::vector<float> dx32(s32.n * s32.h * s32.w * s32.c);
    conv2d_backward(s32, nullptr, w32.data(), dz32.data(), dx32.data(), nullptr, nullptr);
    // C = relu((A B + bias) scale + shift): A (rows, 33), B (33, cols).
    std::vector<float> c(rows * cols);
    Epilogue ep;
    ep.bias = bias.data();
    ep.scale = scale.data();
    ep.shift = shift.data();
    ep.relu = true;
    sgemm(Trans::N, Trans::N, rows, cols, 33, 1.f, dz.data(), 33, dz.data(), cols, 0.f,
          c.data(), cols, &ep);
    Bytes out;
    for (const auto* v : {&sums, &db, &dx, &dw, &dbc, &dx32, &db80, &c}) append(out, *v);
    return out;
  });
}

TEST(VectorIsa, EmbeddingPoolingAndGradientRows) {
  const int64_t vocab = 40, dim = 37, n = 6, steps = 11;
  const auto table = random_vec(vocab * dim, 16);
  std::vector<float> ids(n * steps);
  for (int64_t i = 0; i < n * steps; ++i) ids[i] = static_cast<float>((i * 7) % vocab);
  const auto dy = random_vec(n * steps * dim, 17);
  expect_same_bits([&] {
    std::vector<float> y(n * dim);
    std::vector<int32_t> arg(n * dim), slot(vocab, -1), order(n * steps), rows(n * steps);
    std::vector<int64_t> offsets(n * steps + 1);
    embedding_maxpool_forward(ids.data(), table.data(), y.data(), arg.data(), n, steps, dim,
                              true);
    const int64_t count = collect_rows(ids.data(), n * steps, slot.data(), rows.data());
    std::vector<float> values(count * dim);
    embedding_backward(ids.data(), dy.data(), n * steps, dim, slot.data(), count,
                       offsets.data(), order.data(), values.data());
    Bytes out;
    append(out, y);
    append(out, arg);
    append(out, values);
    return out;
  });
}

TEST(VectorIsa, OptimizerUpdatesAndUniformDraws) {
  const int64_t n = 1001;
  const auto w0 = random_vec(n, 18), g = random_vec(n, 19);
  expect_same_bits([&] {
    Bytes out;
    for (int kind = 0; kind <= static_cast<int>(Opt::Adadelta); ++kind) {
      const Opt opt = static_cast<Opt>(kind);
      std::vector<float> w = w0, s0(n, 0.1f), s1(n, 0.2f), s2(n, 0.f);
      for (int64_t t = 1; t <= 3; ++t) switch (opt) {
          case Opt::SGD:
            sgd_update(w.data(), g.data(), s0.data(), n, 1e-2f, 0.9f, t == 2);
            break;
          case Opt::Adam:
            adam_update(w.data(), g.data(), s0.data(), s1.data(), t == 3 ? s2.data() : nullptr,
                        n, 1e-3f, 0.9f, 0.999f, 1e-7f, t);
            break;
          case Opt::RMSprop:
            rmsprop_update(w.data(), g.data(), s0.data(), s1.data(), t == 2 ? s2.data() : nullptr,
                           n, 1e-3f, 0.9f, 0.5f, 1e-7f);
            break;
          case Opt::Adagrad:
            adagrad_update(w.data(), g.data(), s0.data(), n, 1e-2f, 1e-7f);
            break;
          default:
            optimizer_step(opt, w.data(), g.data(), s0.data(), s1.data(), n, 1e-2f, 0.9f,
                           0.999f, 0.9f, 1e-7f, t);
        }
      for (const auto* v : {&w, &s0, &s1, &s2}) append(out, *v);
    }
    std::vector<float> w = w0, m(n, 0.f), v(n, 0.f);
    GradPrep decay;
    decay.decay = 4e-3f;  // AdamW
    adam_update(w.data(), g.data(), m.data(), v.data(), nullptr, n, 1e-3f, 0.9f, 0.999f,
                1e-7f, 1, decay);
    append(out, w);
    std::vector<float> u(4099);
    fill_uniform(u.data(), static_cast<int64_t>(u.size()), -0.5f, 0.5f, 42, 3);
    append(out, u);
    return out;
  });
}

TEST(VectorIsa, LossesAndTheirGradients) {
  const int64_t n = 300, c = 61;  // over the threads, with vector tails
  const auto logits = random_vec(n * c, 22, -4.f, 4.f);
  const auto probs = random_vec(n * c, 23, 0.f, 1.f);
  const auto y = random_vec(n * c, 24, 0.f, 1.f);
  std::vector<int32_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = static_cast<int32_t>((i * 13) % c);
  expect_same_bits([&] {
    Bytes out;
    for (int l = 0; l <= static_cast<int>(Loss::Tversky); ++l)
      for (bool logit : {false, true}) {
        const Loss loss = static_cast<Loss>(l);
        std::vector<float> g(n * c);
        const double v = loss_forward_backward<float>(
            loss, logit, Act::Linear, logit ? logits.data() : probs.data(), labels.data(),
            y.data(), nullptr, g.data(), n, c, 1.f, loss == Loss::Tversky ? 0.3f : 1.f, 0.7f);
        append(out, g);
        append(out, std::vector<double>{v});
      }
    return out;
  });
}

TEST(VectorIsa, MetricsWithOneValuePerRow) {
  const int64_t n = 300, c = 61;
  const auto out = random_vec(n * c, 25, 0.f, 1.f);
  const auto y = random_vec(n * c, 26, 0.f, 1.f);
  const auto sw = random_vec(n, 27, 0.f, 2.f);
  std::vector<int32_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = static_cast<int32_t>((i * 7) % c);
  expect_same_bits([&] {
    std::vector<double> sums;
    for (int m = 0; m <= static_cast<int>(Metric::CosineSimilarity); ++m) {
      MetricSpec spec;
      spec.kind = static_cast<Metric>(m);
      spec.weighted = m % 2 == 0;
      sums.push_back(metric_sum(spec, out.data(), labels.data(), y.data(), sw.data(), n, c));
    }
    Bytes bytes;
    append(bytes, sums);
    return bytes;
  });
}
