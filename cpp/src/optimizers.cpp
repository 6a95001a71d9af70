// optimizers.cpp: Keras's optimizer rules, clipping and weight decay, fused per range.
#include "ember/optimizers.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

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
}  // namespace

void sgd_update(float* w, const float* g, float* m, int64_t n, float lr, float momentum,
                bool nesterov, const GradPrep& p) {
  if (!m) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) w[i] = decayed(w[i], p) - lr * prep_grad(g[i], p);
    return;
  }
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = prep_grad(g[i], p);
    m[i] = momentum * m[i] - lr * gi;
    w[i] = decayed(w[i], p) + (nesterov ? momentum * m[i] - lr * gi : m[i]);
  }
}

void adam_update(float* w, const float* g, float* m, float* v, float* vhat, int64_t n,
                 float lr, float beta_1, float beta_2, float epsilon, int64_t t,
                 const GradPrep& p) {
  // Keras computes the powers and alpha in float32.
  const float b1t = std::pow(beta_1, static_cast<float>(t));
  const float b2t = std::pow(beta_2, static_cast<float>(t));
  const float alpha = lr * std::sqrt(1.f - b2t) / (1.f - b1t);
  const float c1 = 1.f - beta_1, c2 = 1.f - beta_2;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = prep_grad(g[i], p);
    m[i] += (gi - m[i]) * c1;
    v[i] += (gi * gi - v[i]) * c2;
    float vi = v[i];
    if (vhat) vi = vhat[i] = std::max(vhat[i], vi);
    w[i] = decayed(w[i], p) - (m[i] * alpha) / (std::sqrt(vi) + epsilon);
  }
}

void rmsprop_update(float* w, const float* g, float* v, float* m, float* a, int64_t n,
                    float lr, float rho, float momentum, float epsilon, const GradPrep& p) {
  const float c = 1.f - rho;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = prep_grad(g[i], p);
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
}

void adagrad_update(float* w, const float* g, float* acc, int64_t n, float lr, float epsilon,
                    const GradPrep& p) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = prep_grad(g[i], p);
    acc[i] += gi * gi;
    w[i] = decayed(w[i], p) - lr * gi / std::sqrt(acc[i] + epsilon);
  }
}

double sum_squares(const float* x, int64_t n) {
  // Chunk boundaries depend on n alone; partials live on the stack (no allocation).
  constexpr int64_t kMaxChunks = 256;
  const int64_t chunk = std::max(kNormChunk, (n + kMaxChunks - 1) / kMaxChunks);
  const int64_t chunks = (n + chunk - 1) / chunk;
  double part[kMaxChunks];
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t lo = c * chunk, hi = std::min(n, lo + chunk);
    double s = 0;
    for (int64_t i = lo; i < hi; ++i) s += static_cast<double>(x[i]) * x[i];
    part[c] = s;
  }
  double s = 0;
  for (int64_t c = 0; c < chunks; ++c) s += part[c];
  return s;
}

Optimizer::Optimizer(const OptimizerConfig& cfg) : cfg_(cfg) {
  const int clips = (cfg.clipnorm > 0) + (cfg.clipvalue > 0) + (cfg.global_clipnorm > 0);
  if (clips > 1)
    throw std::invalid_argument(
        "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set");
  if (cfg.clipnorm < 0 || cfg.clipvalue < 0 || cfg.global_clipnorm < 0 || cfg.weight_decay < 0)
    throw std::invalid_argument("clipping thresholds and weight_decay must be >= 0");
}

void Optimizer::resize(int64_t n) {
  int nslots = 0;
  float init = 0.f;
  switch (cfg_.kind) {
    case Opt::SGD: nslots = cfg_.momentum != 0.f; break;
    case Opt::Adam: nslots = cfg_.amsgrad ? 3 : 2; break;
    case Opt::RMSprop: nslots = 1 + (cfg_.momentum > 0.f) + cfg_.centered; break;
    case Opt::Adagrad: nslots = 1; init = cfg_.initial_accumulator_value; break;
  }
  slots_.resize(nslots);
  for (auto& s : slots_) {
    s.resize(n);
    std::fill(s.data(), s.data() + n, init);
  }
  iterations = 0;
}

void Optimizer::update_range(float* w, const float* g, int64_t off, int64_t n, float lr,
                             const GradPrep& p) {
  auto slot = [&](size_t i) { return i < slots_.size() ? slots_[i].data() + off : nullptr; };
  w += off;
  g += off;
  switch (cfg_.kind) {
    case Opt::SGD:
      sgd_update(w, g, slot(0), n, lr, cfg_.momentum, cfg_.nesterov, p);
      break;
    case Opt::Adam:
      adam_update(w, g, slot(0), slot(1), slot(2), n, lr, cfg_.beta_1, cfg_.beta_2,
                  cfg_.epsilon, iterations + 1, p);
      break;
    case Opt::RMSprop: {
      const bool mom = cfg_.momentum > 0.f;
      rmsprop_update(w, g, slot(0), mom ? slot(1) : nullptr,
                     cfg_.centered ? slot(mom ? 2 : 1) : nullptr, n, lr, cfg_.rho,
                     cfg_.momentum, cfg_.epsilon, p);
      break;
    }
    case Opt::Adagrad:
      adagrad_update(w, g, slot(0), n, lr, cfg_.epsilon, p);
      break;
  }
}

void Optimizer::apply(float* w, const float* g, const std::vector<VarSpan>& vars, float lr) {
  // Keras: clipnorm scales each variable's gradient by clipnorm / max(norm, clipnorm);
  // global_clipnorm scales all by clip * min(1/norm, 1/clip), NaN when the norm is not
  // finite; clipvalue clamps each element.
  float global_scale = 1.f;
  if (cfg_.global_clipnorm > 0) {
    double s = 0;
    for (const VarSpan& v : vars)
      if (v.trainable) s += sum_squares(g + v.offset, v.size);
    const double norm = std::sqrt(s), c = cfg_.global_clipnorm;
    global_scale = std::isfinite(norm)
                       ? static_cast<float>(c * std::min(1.0 / norm, 1.0 / c))
                       : std::numeric_limits<float>::quiet_NaN();
  }
  const float decay = cfg_.weight_decay * lr;
  // Runs of adjacent variables that share one GradPrep become one pass.
  int64_t run_off = 0, run_n = 0;
  GradPrep run;
  for (const VarSpan& v : vars) {
    if (!v.trainable || v.size == 0) continue;
    GradPrep p;
    p.scale = global_scale;
    p.clipvalue = cfg_.clipvalue;
    p.decay = v.decay ? decay : 0.f;
    if (cfg_.clipnorm > 0) {
      const double norm = std::sqrt(sum_squares(g + v.offset, v.size)), c = cfg_.clipnorm;
      p.scale = std::isnan(norm) ? std::numeric_limits<float>::quiet_NaN()
                                 : static_cast<float>(c / std::max(norm, c));
    }
    const bool joins = run_n > 0 && run_off + run_n == v.offset && p.scale == run.scale &&
                       p.decay == run.decay;
    if (joins) {
      run_n += v.size;
      continue;
    }
    if (run_n > 0) update_range(w, g, run_off, run_n, lr, run);
    run_off = v.offset;
    run_n = v.size;
    run = p;
  }
  if (run_n > 0) update_range(w, g, run_off, run_n, lr, run);
  ++iterations;
}

}  // namespace ember
