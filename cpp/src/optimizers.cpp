// optimizers.cpp: Keras's optimizer rules, clipping and weight decay, fused per range.
#include "ember/optimizers.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "ember/parallel.h"
#include "ember/vector_isa.h"

namespace ember {

namespace {
constexpr int64_t kParallelMin = 1 << 14;
constexpr int64_t kNormChunk = 1 << 12;

// The gradient the rule sees, and the weight after decoupled decay.
inline float prep_grad(float g, const GradPrep& p) {
  float x = g * p.scale;
  if (p.clipvalue > 0.f) x = std::min(std::max(x, -p.clipvalue), p.clipvalue);
  return x;
}
inline float decayed(float w, const GradPrep& p) { return w - w * p.decay; }

// Each rule updates element i of its variable given the raw gradient there; the same
// rule runs over a dense gradient or over a sparse one (absent rows see 0, so a
// sparse gradient gives exactly the dense update, Keras's semantics).
struct SgdRule {
  float *w, *m;
  float lr, momentum;
  bool nesterov;
  GradPrep p;
  void operator()(int64_t i, float graw) const {
    const float gi = prep_grad(graw, p);
    if (!m) {
      w[i] = decayed(w[i], p) - lr * gi;
      return;
    }
    m[i] = momentum * m[i] - lr * gi;
    w[i] = decayed(w[i], p) + (nesterov ? momentum * m[i] - lr * gi : m[i]);
  }
};

#define EMBER_VECTOR_LOOPS "optimizers_loops.inc"
#include "ember/vector_variants.inc"

void adam_loop(float* w, float* m, float* v, const float* g, int64_t n, float alpha, float c1,
               float c2, float epsilon, float decay) {
  EMBER_VECTOR_CALL(adam_loop, w, m, v, g, n, alpha, c1, c2, epsilon, decay);
}

struct AdamRule {
  float *w, *m, *v, *vhat;
  float alpha, c1, c2, epsilon;
  GradPrep p;
  void operator()(int64_t i, float graw) const {
    const float gi = prep_grad(graw, p);
    m[i] += (gi - m[i]) * c1;
    v[i] += (gi * gi - v[i]) * c2;
    float vi = v[i];
    if (vhat) vi = vhat[i] = std::max(vhat[i], vi);
    w[i] = decayed(w[i], p) - (m[i] * alpha) / (std::sqrt(vi) + epsilon);
  }
  // Elements [i0, i0 + n) with gradient g (null: zero). Without amsgrad or clipping,
  // adam_loop computes the same expressions as operator(), vectorized.
  void range(int64_t i0, int64_t n, const float* g) const {
    if (vhat || p.clipvalue > 0.f || p.scale != 1.f) {
      for (int64_t j = 0; j < n; ++j) (*this)(i0 + j, g ? g[j] : 0.f);
      return;
    }
    adam_loop(w + i0, m + i0, v + i0, g, n, alpha, c1, c2, epsilon, p.decay);
  }
};

template <class Rule>
void rule_range(const Rule& rule, int64_t i0, int64_t n, const float* g) {
  EMBER_VECTOR_CALL(rule_range, rule, i0, n, g);
}
void rule_range(const AdamRule& rule, int64_t i0, int64_t n, const float* g) {
  rule.range(i0, n, g);
}

struct RmspropRule {
  float *w, *v, *m, *a;
  float lr, rho, c, momentum, epsilon;
  GradPrep p;
  void operator()(int64_t i, float graw) const {
    const float gi = prep_grad(graw, p);
    v[i] = rho * v[i] + c * gi * gi;
    float den = v[i] + epsilon;
    if (a) {
      a[i] = rho * a[i] + c * gi;
      den = v[i] - a[i] * a[i] + epsilon;
    }
    const float step = lr * gi / std::sqrt(den);
    const float wi = decayed(w[i], p);
    if (m) {
      m[i] = momentum * m[i] + step;
      w[i] = wi - m[i];
    } else {
      w[i] = wi - step;
    }
  }
};

struct AdagradRule {
  float *w, *acc;
  float lr, epsilon;
  GradPrep p;
  void operator()(int64_t i, float graw) const {
    const float gi = prep_grad(graw, p);
    acc[i] += gi * gi;
    w[i] = decayed(w[i], p) - lr * gi / std::sqrt(acc[i] + epsilon);
  }
};

struct AdamaxRule {
  float *w, *m, *u;
  float lr, c1, beta_2, epsilon, one_minus_b1t;
  GradPrep p;
  void operator()(int64_t i, float graw) const {
    const float gi = prep_grad(graw, p);
    m[i] += (gi - m[i]) * c1;
    u[i] = std::max(beta_2 * u[i], std::fabs(gi));
    w[i] = decayed(w[i], p) - (lr * m[i]) / (one_minus_b1t * (u[i] + epsilon));
  }
};

struct NadamRule {
  float *w, *m, *v;
  float lr, c1, c2, epsilon;
  float mu_t, mu_next, product, product_next, one_minus_b2t;
  GradPrep p;
  void operator()(int64_t i, float graw) const {
    const float gi = prep_grad(graw, p);
    m[i] += (gi - m[i]) * c1;
    v[i] += (gi * gi - v[i]) * c2;
    const float m_hat = mu_next * m[i] / (1.f - product_next) + (1.f - mu_t) * gi / (1.f - product);
    const float v_hat = v[i] / one_minus_b2t;
    w[i] = decayed(w[i], p) - (m_hat * lr) / (std::sqrt(v_hat) + epsilon);
  }
};

struct LionRule {
  float *w, *m;
  float lr, beta_1, beta_2;
  GradPrep p;
  void operator()(int64_t i, float graw) const {
    const float gi = prep_grad(graw, p);
    const float c = m[i] * beta_1 + gi * (1.f - beta_1);
    const float sign = c > 0.f ? 1.f : (c < 0.f ? -1.f : 0.f);
    w[i] = decayed(w[i], p) - lr * sign;
    m[i] = m[i] * beta_2 + gi * (1.f - beta_2);
  }
};

struct AdadeltaRule {
  float *w, *acc_grad, *acc_delta;
  float lr, rho, epsilon;
  GradPrep p;
  void operator()(int64_t i, float graw) const {
    const float gi = prep_grad(graw, p);
    acc_grad[i] = rho * acc_grad[i] + (1.f - rho) * gi * gi;
    const float delta = -std::sqrt(acc_delta[i] + epsilon) * gi / std::sqrt(acc_grad[i] + epsilon);
    acc_delta[i] = rho * acc_delta[i] + (1.f - rho) * delta * delta;
    w[i] = decayed(w[i], p) + lr * delta;
  }
};

// Keras's Ftrl: n' = n + g^2; z += g + 2 l2s w - (n'^-p - n^-p) / lr w;
// w = (clip(z, -l1, l1) - z) / (n'^-p / lr + 2 (l2 + beta / (2 lr))); p = lr_power.
struct FtrlRule {
  float *w, *accum, *linear;
  float lr, neg_power, l1, l2_total, l2_shrinkage;
  GradPrep p;
  void operator()(int64_t i, float graw) const {
    const float gi = prep_grad(graw, p);
    const float wi = decayed(w[i], p);
    const float n0 = accum[i], n1 = n0 + gi * gi;
    const float s1 = std::pow(n1, neg_power), s0 = std::pow(n0, neg_power);
    linear[i] += gi + 2.f * l2_shrinkage * wi - (s1 - s0) / lr * wi;
    const float quadratic = s1 / lr + 2.f * l2_total;
    const float clipped = std::min(std::max(linear[i], -l1), l1);
    w[i] = (clipped - linear[i]) / quadratic;
    accum[i] = n1;
  }
};

// Nadam's momentum factor of step s (Keras computes it in float32).
inline float nadam_mu(float beta_1, int64_t s) {
  return beta_1 * (1.f - 0.5f * std::pow(0.96f, static_cast<float>(s)));
}

NadamRule nadam_rule(float* w, float* m, float* v, float lr, float beta_1, float beta_2,
                     float epsilon, int64_t t, float product, const GradPrep& p) {
  const float mu_t = nadam_mu(beta_1, t), mu_next = nadam_mu(beta_1, t + 1);
  const float b2t = std::pow(beta_2, static_cast<float>(t));
  return NadamRule{w, m, v, lr, 1.f - beta_1, 1.f - beta_2, epsilon, mu_t, mu_next,
                   product, product * mu_next, 1.f - b2t, p};
}

// Fixed chunks (their bounds depend on n only), each one thread's.
template <class Rule>
void run_dense(const Rule& rule, const float* g, int64_t n) {
  constexpr int64_t kChunk = 1 << 12;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t lo = c * kChunk, len = std::min(kChunk, n - lo);
    rule_range(rule, lo, len, g + lo);
  }
}

// Every row of a (rows, cols) variable, its gradient taken from sp (zero where absent).
template <class Rule>
void run_sparse(const Rule& rule, const SparseRows& sp, int64_t rows) {
  const int64_t cols = sp.cols;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t k = sp.slot[r];
    rule_range(rule, r * cols, cols, k < 0 ? nullptr : sp.values + static_cast<int64_t>(k) * cols);
  }
}

AdamRule adam_rule(float* w, float* m, float* v, float* vhat, float lr, float beta_1,
                   float beta_2, float epsilon, int64_t t, const GradPrep& p) {
  // Keras computes the powers and alpha in float32.
  const float b1t = std::pow(beta_1, static_cast<float>(t));
  const float b2t = std::pow(beta_2, static_cast<float>(t));
  const float alpha = lr * std::sqrt(1.f - b2t) / (1.f - b1t);
  return AdamRule{w, m, v, vhat, alpha, 1.f - beta_1, 1.f - beta_2, epsilon, p};
}

}  // namespace

void sgd_update(float* w, const float* g, float* m, int64_t n, float lr, float momentum,
                bool nesterov, const GradPrep& p) {
  run_dense(SgdRule{w, m, lr, momentum, nesterov, p}, g, n);
}

void adam_update(float* w, const float* g, float* m, float* v, float* vhat, int64_t n,
                 float lr, float beta_1, float beta_2, float epsilon, int64_t t,
                 const GradPrep& p) {
  run_dense(adam_rule(w, m, v, vhat, lr, beta_1, beta_2, epsilon, t, p), g, n);
}

void rmsprop_update(float* w, const float* g, float* v, float* m, float* a, int64_t n,
                    float lr, float rho, float momentum, float epsilon, const GradPrep& p) {
  run_dense(RmspropRule{w, v, m, a, lr, rho, 1.f - rho, momentum, epsilon, p}, g, n);
}

void adagrad_update(float* w, const float* g, float* acc, int64_t n, float lr, float epsilon,
                    const GradPrep& p) {
  run_dense(AdagradRule{w, acc, lr, epsilon, p}, g, n);
}

void optimizer_step(Opt kind, float* w, const float* g, float* s0, float* s1, int64_t n,
                    float lr, float beta_1, float beta_2, float rho, float epsilon,
                    int64_t t, const GradPrep& p) {
  if (t < 1) throw std::invalid_argument("optimizer_step: t must be >= 1");
  switch (kind) {
    case Opt::Adamax:
      run_dense(AdamaxRule{w, s0, s1, lr, 1.f - beta_1, beta_2, epsilon,
                           1.f - std::pow(beta_1, static_cast<float>(t)), p}, g, n);
      break;
    case Opt::Nadam: {
      float product = 1.f;
      for (int64_t s = 1; s <= t; ++s) product *= nadam_mu(beta_1, s);
      run_dense(nadam_rule(w, s0, s1, lr, beta_1, beta_2, epsilon, t, product, p), g, n);
      break;
    }
    case Opt::Lion: run_dense(LionRule{w, s0, lr, beta_1, beta_2, p}, g, n); break;
    case Opt::Adadelta: run_dense(AdadeltaRule{w, s0, s1, lr, rho, epsilon, p}, g, n); break;
    default: throw std::invalid_argument("optimizer_step: Adamax, Nadam, Lion or Adadelta");
  }
}

// The sum over [0, n) of part(lo, hi) (each a double sum over a chunk): chunk boundaries
// depend on n alone and chunks are added in order, so the bits do not depend on the
// thread count; the partials live on the stack (no allocation).
template <class Part>
static double chunked_sum(int64_t n, Part part) {
  constexpr int64_t kMaxChunks = 256;
  const int64_t chunk = std::max(kNormChunk, (n + kMaxChunks - 1) / kMaxChunks);
  const int64_t chunks = (n + chunk - 1) / chunk;
  double partial[kMaxChunks];
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t c = 0; c < chunks; ++c) partial[c] = part(c * chunk, std::min(n, (c + 1) * chunk));
  double s = 0;
  for (int64_t c = 0; c < chunks; ++c) s += partial[c];
  return s;
}

double add_penalty(const float* w, float* g, int64_t n, float l1, float l2) {
  return chunked_sum(n, [&](int64_t lo, int64_t hi) {
    double s = 0;
    for (int64_t i = lo; i < hi; ++i) {
      const float v = w[i];
      s += l1 * std::abs(static_cast<double>(v)) + l2 * static_cast<double>(v) * v;
      // |w|'s slope at 0 taken as +1, as Keras on JAX takes it (TensorFlow's is 0).
      if (g) g[i] += (v >= 0.f ? l1 : -l1) + 2.f * l2 * v;
    }
    return s;
  });
}

void apply_constraint(const Constraint& c, float* w, int64_t n) {
  if (c.kind == ConstraintKind::None) return;
  if (c.kind == ConstraintKind::NonNeg) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) w[i] = w[i] >= 0.f ? w[i] : 0.f;
    return;
  }
  const int64_t rows = c.rows, cols = n / rows;
  constexpr double kEps = 1e-7;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t j = 0; j < cols; ++j) {
    double sq = 0;
    for (int64_t r = 0; r < rows; ++r) sq += static_cast<double>(w[r * cols + j]) * w[r * cols + j];
    const double norm = std::sqrt(sq);
    double want = 1.0;
    if (c.kind == ConstraintKind::MaxNorm) want = std::min(norm, double(c.max_value));
    if (c.kind == ConstraintKind::MinMaxNorm)
      want = c.rate * std::min(std::max(norm, double(c.min_value)), double(c.max_value)) +
             (1.0 - c.rate) * norm;
    const float scale = static_cast<float>(want / (kEps + norm));
    for (int64_t r = 0; r < rows; ++r) w[r * cols + j] *= scale;
  }
}

double sum_squares(const float* x, int64_t n) {
  return chunked_sum(n, [&](int64_t lo, int64_t hi) {
    double s = 0;
    for (int64_t i = lo; i < hi; ++i) s += static_cast<double>(x[i]) * x[i];
    return s;
  });
}

// A variable's squared gradient norm, from its sparse rows when it has them.
static double grad_sum_squares(const OptVar& v) {
  if (v.sparse) return sum_squares(v.sparse->values, v.sparse->count * v.sparse->cols);
  return sum_squares(v.grad, v.var->size());
}

Optimizer::Optimizer(const OptimizerConfig& cfg) : cfg_(cfg) {
  const int clips = (cfg.clipnorm > 0) + (cfg.clipvalue > 0) + (cfg.global_clipnorm > 0);
  if (clips > 1)
    throw std::invalid_argument(
        "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set");
  if (cfg.clipnorm < 0 || cfg.clipvalue < 0 || cfg.global_clipnorm < 0 || cfg.weight_decay < 0)
    throw std::invalid_argument("clipping thresholds and weight_decay must be >= 0");
  if (cfg.accumulation_steps < 0 || cfg.accumulation_steps == 1 ||
      cfg.ema_overwrite_frequency < 0 || !(cfg.ema_momentum >= 0.f && cfg.ema_momentum <= 1.f))
    throw std::invalid_argument(
        "accumulation_steps must be 0 or >= 2, ema_overwrite_frequency >= 0 and "
        "ema_momentum in [0, 1]");
}

int Optimizer::num_slots() const {
  return rule_slots() + cfg_.use_ema + (cfg_.accumulation_steps > 1);
}

int Optimizer::rule_slots() const {
  switch (cfg_.kind) {
    case Opt::SGD: return cfg_.momentum != 0.f;
    case Opt::Adam: return cfg_.amsgrad ? 3 : 2;
    case Opt::RMSprop: return 1 + (cfg_.momentum > 0.f) + cfg_.centered;
    case Opt::Adagrad: case Opt::Lion: return 1;
    case Opt::Adamax: case Opt::Nadam: case Opt::Adadelta: case Opt::Ftrl: return 2;
  }
  return 0;
}

std::vector<FloatBuffer>& Optimizer::slots_for(const VariablePtr& v) {
  auto it = slots_.find(v.get());
  if (it != slots_.end()) return it->second;
  std::vector<FloatBuffer> slots(num_slots());
  // Adagrad's and Ftrl's accumulator (slot 0) starts at initial_accumulator_value.
  const bool accumulates = cfg_.kind == Opt::Adagrad || cfg_.kind == Opt::Ftrl;
  for (size_t k = 0; k < slots.size(); ++k) {
    slots[k].resize(v->size());
    const float init = accumulates && k == 0 ? cfg_.initial_accumulator_value : 0.f;
    std::fill(slots[k].data(), slots[k].data() + v->size(), init);
  }
  order_.reserve(order_.size() + 1);
  auto& placed = slots_.emplace(v.get(), std::move(slots)).first->second;
  order_.push_back(v);
  return placed;
}

void Optimizer::update(float* w, const float* g, float* const* slot, int64_t n, float lr,
                       const GradPrep& p, const SparseRows* sparse) {
  auto run = [&](const auto& rule) {
    if (sparse)
      run_sparse(rule, *sparse, n / sparse->cols);
    else
      run_dense(rule, g, n);
  };
  switch (cfg_.kind) {
    case Opt::SGD:
      run(SgdRule{w, slot[0], lr, cfg_.momentum, cfg_.nesterov, p});
      break;
    case Opt::Adam:
      run(adam_rule(w, slot[0], slot[1], slot[2], lr, cfg_.beta_1, cfg_.beta_2, cfg_.epsilon,
                    updates() + 1, p));
      break;
    case Opt::RMSprop: {
      const bool mom = cfg_.momentum > 0.f;
      run(RmspropRule{w, slot[0], mom ? slot[1] : nullptr,
                      cfg_.centered ? slot[mom ? 2 : 1] : nullptr, lr, cfg_.rho,
                      1.f - cfg_.rho, cfg_.momentum, cfg_.epsilon, p});
      break;
    }
    case Opt::Adagrad:
      run(AdagradRule{w, slot[0], lr, cfg_.epsilon, p});
      break;
    case Opt::Adamax:
      run(AdamaxRule{w, slot[0], slot[1], lr, 1.f - cfg_.beta_1, cfg_.beta_2, cfg_.epsilon,
                     1.f - std::pow(cfg_.beta_1, static_cast<float>(updates() + 1)), p});
      break;
    case Opt::Nadam:  // apply() has brought nadam_product_ to this step
      run(nadam_rule(w, slot[0], slot[1], lr, cfg_.beta_1, cfg_.beta_2, cfg_.epsilon,
                     updates() + 1, nadam_product_, p));
      break;
    case Opt::Lion:
      run(LionRule{w, slot[0], lr, cfg_.beta_1, cfg_.beta_2, p});
      break;
    case Opt::Adadelta:
      run(AdadeltaRule{w, slot[0], slot[1], lr, cfg_.rho, cfg_.epsilon, p});
      break;
    case Opt::Ftrl:
      run(FtrlRule{w, slot[0], slot[1], lr, -cfg_.lr_power, cfg_.l1,
                   cfg_.l2 + cfg_.ftrl_beta / (2.f * lr), cfg_.l2_shrinkage, p});
      break;
  }
}

void Optimizer::apply(const std::vector<OptVar>& vars, float lr) {
  const int64_t steps = cfg_.accumulation_steps;
  const bool update_now = steps < 2 || (iterations + 1) % steps == 0;
  if (steps < 2)
    update_all(vars, lr);
  else if (const std::vector<OptVar>* mean = accumulate(vars, update_now))
    update_all(*mean, lr);
  if (update_now && steps >= 2)  // Keras: the accumulators restart after an update
    for (const OptVar& v : vars) (*v.slots)[accumulator_slot()].zero();
  if (cfg_.use_ema) update_averages(vars);
  ++iterations;
}

const std::vector<OptVar>* Optimizer::accumulate(const std::vector<OptVar>& vars,
                                                 bool update_now) {
  // Keras: acc + g on every call; (acc + g) / steps on an update call.
  const float steps = static_cast<float>(cfg_.accumulation_steps);
  if (update_now) accumulated_.clear();
  for (const OptVar& v : vars) {
    float* acc = (*v.slots)[accumulator_slot()].data();
    const int64_t n = v.var->size();
    if (v.sparse) {
      const SparseRows& sp = *v.sparse;
      const int64_t rows = n / sp.cols;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
      for (int64_t r = 0; r < rows; ++r) {
        const int32_t k = sp.slot[r];
        if (k < 0) continue;
        const float* g = sp.values + static_cast<int64_t>(k) * sp.cols;
        for (int64_t j = 0; j < sp.cols; ++j) acc[r * sp.cols + j] += g[j];
      }
    } else {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) acc[i] += v.grad[i];
    }
    if (!update_now) continue;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) acc[i] /= steps;
    OptVar mean = v;
    mean.grad = acc;
    mean.sparse = nullptr;
    accumulated_.push_back(mean);
  }
  return update_now ? &accumulated_ : nullptr;
}

void Optimizer::update_averages(const std::vector<OptVar>& vars) {
  // Keras: momentum 0 while `iterations` (the updates made before this call) is 0.
  const float m = updates() != 0 ? cfg_.ema_momentum : 0.f, rest = 1.f - m;
  const int64_t every = cfg_.ema_overwrite_frequency;
  const bool overwrite = every > 0 && (updates() + 1) % every == 0;
  for (const OptVar& v : vars) {
    float* avg = (*v.slots)[ema_slot()].data();
    float* w = v.var->data();
    const int64_t n = v.var->size();
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      avg[i] = m * avg[i] + rest * w[i];
      if (overwrite) w[i] = avg[i];
    }
  }
}

void Optimizer::update_all(const std::vector<OptVar>& vars, float lr) {
  // Keras: clipnorm scales each variable's gradient by clipnorm / max(norm, clipnorm);
  // global_clipnorm scales all by clip * min(1/norm, 1/clip), NaN when the norm is not
  // finite; clipvalue clamps each element.
  float global_scale = 1.f;
  if (cfg_.global_clipnorm > 0) {
    double s = 0;
    for (const OptVar& v : vars) s += grad_sum_squares(v);
    const double norm = std::sqrt(s), c = cfg_.global_clipnorm;
    global_scale = std::isfinite(norm)
                       ? static_cast<float>(c * std::min(1.0 / norm, 1.0 / c))
                       : std::numeric_limits<float>::quiet_NaN();
  }
  if (cfg_.kind == Opt::Nadam) {  // Keras: the product takes this step's factor first
    const int64_t t = updates();
    if (nadam_at_ != t) {
      nadam_product_ = 1.f;
      for (int64_t s = 1; s <= t; ++s) nadam_product_ *= nadam_mu(cfg_.beta_1, s);
    }
    nadam_product_ *= nadam_mu(cfg_.beta_1, t + 1);
    nadam_at_ = t + 1;
  }
  const float decay = cfg_.weight_decay * lr;
  for (const OptVar& v : vars) {
    if (v.var->size() == 0) continue;
    GradPrep p;
    p.scale = global_scale;
    p.clipvalue = cfg_.clipvalue;
    p.decay = v.decay ? decay : 0.f;
    if (cfg_.clipnorm > 0) {
      const double norm = std::sqrt(grad_sum_squares(v)), c = cfg_.clipnorm;
      p.scale = std::isnan(norm) ? std::numeric_limits<float>::quiet_NaN()
                                 : static_cast<float>(c / std::max(norm, c));
    }
    float* slot[3] = {nullptr, nullptr, nullptr};
    for (int i = 0; i < rule_slots(); ++i) slot[i] = (*v.slots)[i].data();
    update(v.var->data(), v.grad, slot, v.var->size(), lr, p, v.sparse);
  }
}

}  // namespace ember
