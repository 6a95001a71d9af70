// ab_inprocess.cpp: two builds of ember's core timed call by call in one process, for
// before/after comparisons on a noisy machine. Runs in separate processes drift by
// +-20% from one minute to the next here; calls of the two builds interleaved in one
// process see the same machine, and their ratio repeats to about 1%.
//
// Each build becomes a shared library (the core's static library is position
// independent), loaded with RTLD_LOCAL and -Bsymbolic so the two copies stay apart:
//
//   cmake -S . -B build/cpp -G Ninja -DEMBER_BUILD_PYTHON=OFF -DCMAKE_BUILD_TYPE=Release
//   ninja -C build/cpp        # and the same in a worktree of the other commit
//   g++ -O2 -fPIC -shared -fopenmp -Wl,-Bsymbolic -DAB_LIBRARY -Icpp/include
//       benchmarks/ab_inprocess.cpp build/cpp/cpp/libember_core.a -o /tmp/new.so
//   g++ -O2 -fopenmp benchmarks/ab_inprocess.cpp -o /tmp/ab -ldl
//   /tmp/ab /tmp/old.so /tmp/new.so predict         # MLP 784-512-256-10, batch 1
//                                                   # (BATCH=n: batch n)
//   /tmp/ab /tmp/old.so /tmp/new.so predict_sparse  # the same, 81% of inputs zero
//   /tmp/ab /tmp/old.so /tmp/new.so train           # one Adam step of it, batch 128
//   SHAPE="128 10 256 N T" /tmp/ab /tmp/old.so /tmp/new.so sgemm
//   /tmp/ab /tmp/old.so /tmp/new.so lstm            # run.py's LSTM workload, batch 1
//                                                   # (BATCH=n: batch n)
//   /tmp/ab /tmp/old.so /tmp/new.so lstm_train      # one Adam step of it, batch 128
//                                                   # (BATCH=n: batch n)
//   /tmp/ab /tmp/old.so /tmp/new.so uniform         # Philox fill of a dropout mask
//                                                   # (SIZE=n values, default 128 x 512)
//   /tmp/ab /tmp/old.so /tmp/new.so conv_dw         # a 3x3 'same' convolution's kernel
//                                                   # gradient (CONV="n h w c f", default
//                                                   # the ResNet's "64 32 32 32 32")
//   /tmp/ab /tmp/old.so /tmp/new.so conv_dx         # a 3x3 'valid' convolution's input
//                                                   # gradient (CONV="n h w c f", default
//                                                   # the CNN's conv2 "64 15 15 32 64")
//   /tmp/ab /tmp/old.so /tmp/new.so cnn             # run.py's CNN, predict at batch 1024
//                                                   # (BATCH=n: batch n)
//   /tmp/ab /tmp/old.so /tmp/new.so cnn_train       # one Adam step of it, batch 64
//                                                   # (BATCH=n: batch n)
//   /tmp/ab /tmp/old.so /tmp/new.so maxpool         # 2x2 max pooling forward (with argmax)
//                                                   # and backward after a relu (POOL="n h
//                                                   # w c", default the CNN's "64 30 30 32")
//
// T=threads (default 2); BLOCK=n times each build n calls in a row (default 1: the
// builds alternate every call, so neither keeps its weights in cache); CALLS=n calls of
// each build per line (default 6000; fewer for large products). Prints the median
// microseconds of each build and new / old, five times.
#ifdef AB_LIBRARY
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "ember/conv2d.h"
#include "ember/gemm.h"
#include "ember/graph.h"
#include "ember/pooling.h"
#include "ember/random.h"

using namespace ember;

// The executor's API changed with the DAG (variables owned by layers, value ids, lists
// of inputs and outputs); this file builds against either, so a build from before the
// change can still be the baseline.
#if __has_include("ember/variable.h")
#define AB_DAG 1
#endif

namespace {

struct Mlp {
#ifdef AB_DAG
  Graph g;
  std::vector<VariablePtr> vars;
#else
  Graph g{{784}};
#endif
  std::vector<float> x, out, targets;
  std::vector<int32_t> labels;
  Batch b;
};

struct Fill {
  std::vector<float> out;
  uint64_t step = 0;
};

struct Conv {
  Conv2DShape s;
  std::vector<float> x, dz, dw, w, dx;
};

struct Pool {
  Pool2DShape s;
  std::vector<float> x, y, dy, dx;
  std::vector<int32_t> argmax;
};

struct Product {
  int64_t M = 0, N = 0, K = 0;
  Trans ta = Trans::N, tb = Trans::N;
  std::vector<float> A, B, C;
};

void* make_mlp(bool sparse) {
  auto* m = new Mlp;
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> w(-0.06f, 0.06f), u(0.f, 1.f);
#ifdef AB_DAG
  int v = m->g.add_input({784});
  const int64_t sizes[] = {784, 512, 256, 10};
  for (int l = 0; l < 3; ++l) {
    auto kernel = std::make_shared<Variable>(std::vector<int64_t>{sizes[l], sizes[l + 1]});
    auto bias = std::make_shared<Variable>(std::vector<int64_t>{sizes[l + 1]});
    for (auto* var : {kernel.get(), bias.get()})
      for (int64_t i = 0; i < var->size(); ++i) var->data()[i] = w(rng);
    m->vars.push_back(kernel);
    m->vars.push_back(bias);
    v = m->g.add_dense(v, kernel, bias, l < 2 ? Act::Relu : Act::Softmax);
  }
  m->g.set_outputs({v});
#else
  m->g.add_dense(512, Act::Relu, true);
  m->g.add_dense(256, Act::Relu, true);
  m->g.add_dense(10, Act::Softmax, true);
  for (int64_t i = 0; i < m->g.num_params(); ++i) m->g.params()[i] = w(rng);
#endif
  const int64_t n = std::getenv("BATCH") ? std::max(1, std::atoi(std::getenv("BATCH"))) : 1;
  m->x.resize(n * 784);
  m->out.resize(n * 10);
  for (size_t i = 0; i < m->x.size(); ++i)  // sparse: blank pixels, as in MNIST
    m->x[i] = !sparse || i % 784 * 7919 % 100 < 19 ? u(rng) : 0.f;
#ifdef AB_DAG
  m->b.x = {m->x.data()};
#else
  m->b.x = m->x.data();
#endif
  m->b.n = m->b.rows = n;
  return m;
}

#ifdef AB_DAG
// A batch of BATCH rows (else `fallback`) of `in` input and `out` output floats each;
// returns its rows.
int64_t set_batch(Mlp* m, int64_t fallback, int64_t in, int64_t out) {
  const char* batch = std::getenv("BATCH");
  const int64_t n = batch ? std::max(1, std::atoi(batch)) : fallback;
  m->x.resize(n * in);
  m->out.resize(n * out);
  m->b.x = {m->x.data()};
  m->b.n = m->b.rows = n;
  return n;
}

// Adam on the graph's one output, against m->labels (integer classes) if there are
// any, else m->targets.
void add_training(Mlp* m, Loss loss) {
  OutputSpec out;
  out.has_loss = true;
  out.loss = loss;
  m->g.set_output_spec(0, out);
  m->g.set_optimizer(std::make_shared<Optimizer>(OptimizerConfig{}));
  const bool classes = !m->labels.empty();
  m->b.labels = {classes ? m->labels.data() : nullptr};
  m->b.y = {classes ? nullptr : m->targets.data()};
}

// run.py's lstm workload at batch 1 (BATCH=n: n): Embedding(20000, 128) over 200 ids,
// LSTM(128), Dense(1, sigmoid); training: batch 128 (or BATCH), binary crossentropy, Adam.
void* make_lstm(bool training) {
  auto* m = new Mlp;
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> w(-0.08f, 0.08f);
  auto var = [&](std::vector<int64_t> shape) {
    auto v = std::make_shared<Variable>(shape);
    for (int64_t i = 0; i < v->size(); ++i) v->data()[i] = w(rng);
    m->vars.push_back(v);
    return v;
  };
  int v = m->g.add_input({200});
  v = m->g.add_embedding(v, var({20000, 128}), false);
  RnnSpec spec;
  spec.units = 128;
  v = m->g.add_rnn(v, spec, var({128, 512}), var({128, 512}), var({512}))[0];
  v = m->g.add_dense(v, var({128, 1}), var({1}), Act::Sigmoid);
  m->g.set_outputs({v});
  const int64_t n = set_batch(m, training ? 128 : 1, 200, 1);
  for (auto& id : m->x) id = static_cast<float>(1 + rng() % 19999);
  if (training) {
    m->targets.resize(n);
    for (auto& t : m->targets) t = static_cast<float>(rng() % 2);
    add_training(m, Loss::BinaryCrossentropy);
  }
  return m;
}

// run.py's cnn workload for predict: Conv2D(32, 3, relu), MaxPooling2D, Conv2D(64, 3,
// relu), MaxPooling2D, Conv2D(64, 3, relu), Flatten, Dense(64, relu), Dense(10,
// softmax) on 32 x 32 x 3 images, batch 1024 (or BATCH); training: batch 64 (or BATCH),
// sparse categorical crossentropy, Adam.
void* make_cnn(bool training) {
  auto* m = new Mlp;
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> w(-0.1f, 0.1f), u(0.f, 1.f);
  auto var = [&](std::vector<int64_t> shape) {
    auto v = std::make_shared<Variable>(shape);
    for (int64_t i = 0; i < v->size(); ++i) v->data()[i] = w(rng);
    m->vars.push_back(v);
    return v;
  };
  int v = m->g.add_input({32, 32, 3});
  v = m->g.add_conv2d(v, var({3, 3, 3, 32}), var({32}), 1, 1, 1, 1, false, Act::Relu);
  v = m->g.add_pool2d(v, true, 2, 2, 2, 2, false);
  v = m->g.add_conv2d(v, var({3, 3, 32, 64}), var({64}), 1, 1, 1, 1, false, Act::Relu);
  v = m->g.add_pool2d(v, true, 2, 2, 2, 2, false);
  v = m->g.add_conv2d(v, var({3, 3, 64, 64}), var({64}), 1, 1, 1, 1, false, Act::Relu);
  v = m->g.add_reshape(v, {1024});
  v = m->g.add_dense(v, var({1024, 64}), var({64}), Act::Relu);
  v = m->g.add_dense(v, var({64, 10}), var({10}), Act::Softmax);
  m->g.set_outputs({v});
  const int64_t n = set_batch(m, training ? 64 : 1024, 32 * 32 * 3, 10);
  for (auto& x : m->x) x = u(rng);
  if (training) {
    m->labels.resize(n);
    for (auto& l : m->labels) l = static_cast<int32_t>(rng() % 10);
    add_training(m, Loss::SparseCategoricalCrossentropy);
  }
  return m;
}
#endif

// The benchmarks' MLP training step: batch 128, Adam, sparse categorical crossentropy.
void* make_training() {
  auto* m = static_cast<Mlp*>(make_mlp(false));
  const int64_t n = 128;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  m->x.resize(n * 784);
  for (auto& v : m->x) v = u(rng);
  m->labels.resize(n);
  for (int64_t i = 0; i < n; ++i) m->labels[i] = static_cast<int32_t>(rng() % 10);
#ifdef AB_DAG
  add_training(m, Loss::SparseCategoricalCrossentropy);
  m->b.x = {m->x.data()};
#else
  m->g.set_loss(Loss::SparseCategoricalCrossentropy, false);
  m->g.set_optimizer(OptimizerConfig{});
  m->b.x = m->x.data();
  m->b.labels = m->labels.data();
#endif
  m->b.n = m->b.rows = n;
  return m;
}

}  // namespace

extern "C" void* ab_setup(const char* what) {
  if (std::string(what) == "predict") return make_mlp(false);
  if (std::string(what) == "predict_sparse") return make_mlp(true);
  if (std::string(what) == "train") return make_training();
#ifdef AB_DAG
  if (std::string(what) == "lstm") return make_lstm(false);
  if (std::string(what) == "lstm_train") return make_lstm(true);
  if (std::string(what) == "cnn") return make_cnn(false);
  if (std::string(what) == "cnn_train") return make_cnn(true);
#endif
  if (std::string(what) == "uniform") {
    auto* f = new Fill;
    f->out.resize(std::getenv("SIZE") ? std::max(1, std::atoi(std::getenv("SIZE"))) : 128 * 512);
    return f;
  }
  if (std::string(what) == "conv_dw" || std::string(what) == "conv_dx") {
    auto* c = new Conv;
    const bool dx = std::string(what) == "conv_dx";
    int64_t n = 64, h = dx ? 15 : 32, w = dx ? 15 : 32, ch = 32, f = dx ? 64 : 32;
    if (const char* conv = std::getenv("CONV"))
      std::sscanf(conv, "%ld %ld %ld %ld %ld", &n, &h, &w, &ch, &f);
    c->s = conv2d_shape(n, h, w, ch, 3, 3, f, 1, 1, 1, 1, !dx);
    std::mt19937 rng(0);
    std::normal_distribution<float> d;
    c->x.resize(n * h * w * ch);
    c->dx.resize(c->x.size());
    c->dz.resize(n * c->s.oh * c->s.ow * f);
    c->dw.resize(9 * ch * f);
    c->w.resize(9 * ch * f);
    for (auto& v : c->x) v = d(rng);
    for (auto& v : c->dz) v = d(rng);
    for (auto& v : c->w) v = d(rng);
    return c;
  }
  if (std::string(what) == "maxpool") {
    auto* p = new Pool;
    int64_t n = 64, h = 30, w = 30, c = 32;
    if (const char* pool = std::getenv("POOL"))
      std::sscanf(pool, "%ld %ld %ld %ld", &n, &h, &w, &c);
    p->s = pool2d_shape(n, h, w, c, 2, 2, 2, 2, false);
    std::mt19937 rng(0);
    std::normal_distribution<float> d;
    p->x.resize(n * h * w * c);
    for (auto& v : p->x) v = std::max(0.f, d(rng));  // a relu's output
    p->dx.resize(p->x.size());
    p->y.resize(n * p->s.oh * p->s.ow * c);
    p->dy.resize(p->y.size());
    for (auto& v : p->dy) v = d(rng);
    p->argmax.resize(p->y.size());
    return p;
  }
  auto* p = new Product;
  char a = 'N', b = 'N';
  const char* shape = std::getenv("SHAPE");
  if (!shape || std::sscanf(shape, "%ld %ld %ld %c %c", &p->M, &p->N, &p->K, &a, &b) < 3) {
    std::fprintf(stderr, "sgemm needs SHAPE=\"M N K [N|T] [N|T]\"\n");
    std::exit(2);
  }
  p->ta = a == 'T' ? Trans::T : Trans::N;
  p->tb = b == 'T' ? Trans::T : Trans::N;
  std::mt19937 rng(0);
  std::normal_distribution<float> d;
  p->A.resize(p->M * p->K);
  p->B.resize(p->K * p->N);
  p->C.resize(p->M * p->N);
  for (auto& v : p->A) v = d(rng);
  for (auto& v : p->B) v = d(rng);
  return p;
}

extern "C" void ab_call(const char* what, void* state) {
  if (std::string(what) == "uniform") {
    auto* f = static_cast<Fill*>(state);
    fill_uniform(f->out.data(), static_cast<int64_t>(f->out.size()), 0.f, 1.f, 7, f->step++);
    return;
  }
  if (std::string(what) == "maxpool") {
    auto* p = static_cast<Pool*>(state);
    maxpool2d_forward(p->s, p->x.data(), p->y.data(), p->argmax.data());
    maxpool2d_backward(p->s, p->dy.data(), p->argmax.data(), p->dx.data(), p->y.data());
    return;
  }
  if (std::string(what) == "conv_dw") {
    auto* c = static_cast<Conv*>(state);
    conv2d_backward(c->s, c->x.data(), nullptr, c->dz.data(), nullptr, c->dw.data(), nullptr);
    return;
  }
  if (std::string(what) == "conv_dx") {
    auto* c = static_cast<Conv*>(state);
    conv2d_backward(c->s, nullptr, c->w.data(), c->dz.data(), c->dx.data(), nullptr, nullptr);
    return;
  }
  if (std::string(what) == "train" || std::string(what) == "lstm_train" ||
      std::string(what) == "cnn_train") {
    auto* m = static_cast<Mlp*>(state);
    m->g.train_step(m->b, 1e-3f);
    return;
  }
  if (std::string(what) != "sgemm") {  // predict, predict_sparse, lstm, cnn
    auto* m = static_cast<Mlp*>(state);
#ifdef AB_DAG
    m->g.predict(m->b, {m->out.data()});
#else
    m->g.predict(m->b, m->out.data());
#endif
    return;
  }
  auto* p = static_cast<Product*>(state);
  sgemm(p->ta, p->tb, p->M, p->N, p->K, 1.f, p->A.data(), p->ta == Trans::N ? p->K : p->M,
        p->B.data(), p->tb == Trans::N ? p->N : p->K, 0.f, p->C.data(), p->N);
}

#else  // the driver
#include <dlfcn.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: %s old.so new.so "
                 "predict|predict_sparse|train|sgemm|lstm|lstm_train|uniform|conv_dw|conv_dx|"
                 "maxpool|cnn|cnn_train\n",
                 argv[0]);
    return 2;
  }
  const char* what = argv[3];
  omp_set_num_threads(std::getenv("T") ? std::atoi(std::getenv("T")) : 2);
  const int block = std::getenv("BLOCK") ? std::max(1, std::atoi(std::getenv("BLOCK"))) : 1;
  const int calls = std::getenv("CALLS") ? std::max(4, std::atoi(std::getenv("CALLS"))) : 6000;
  using Setup = void* (*)(const char*);
  using Call = void (*)(const char*, void*);
  void* state[2];
  Call call[2];
  for (int i = 0; i < 2; ++i) {
    void* lib = dlopen(argv[1 + i], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      std::fprintf(stderr, "%s\n", dlerror());
      return 1;
    }
    state[i] = reinterpret_cast<Setup>(dlsym(lib, "ab_setup"))(what);
    call[i] = reinterpret_cast<Call>(dlsym(lib, "ab_call"));
  }
  for (int rep = 0; rep < 5; ++rep) {
    std::vector<double> us[2];
    for (int r = 0; r < std::max(1, calls / block); ++r)
      for (int j = 0; j < 2; ++j) {
        const int i = r % 2 ? 1 - j : j;  // who goes first alternates too
        for (int q = 0; q < block; ++q) {
          const auto t0 = std::chrono::steady_clock::now();
          call[i](what, state[i]);
          const std::chrono::duration<double, std::micro> dt =
              std::chrono::steady_clock::now() - t0;
          if (q >= block / 4) us[i].push_back(dt.count());  // a block's first calls warm up
        }
      }
    double med[2];
    for (int i = 0; i < 2; ++i) {
      std::sort(us[i].begin(), us[i].end());
      med[i] = us[i][us[i].size() / 2];
    }
    std::printf("%s: old %.2f us, new %.2f us, new / old %.3f\n", what, med[0], med[1],
                med[1] / med[0]);
  }
}
#endif
