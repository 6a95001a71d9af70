// optimizers.cpp: SGD and Adam with Keras's update rules, one pass over all weights.
#include "ember/optimizers.h"

#include <cmath>

namespace ember {

namespace {
constexpr int64_t kParallelMin = 1 << 14;
}

void sgd_update(float* w, const float* g, float* m, int64_t n, float lr, float momentum,
                bool nesterov) {
  if (momentum == 0.f) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) w[i] -= lr * g[i];
    return;
  }
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    m[i] = momentum * m[i] - lr * g[i];
    w[i] += nesterov ? momentum * m[i] - lr * g[i] : m[i];
  }
}

void adam_update(float* w, const float* g, float* m, float* v, int64_t n, float lr,
                 float beta_1, float beta_2, float epsilon, int64_t t) {
  // Keras computes the powers and alpha in float32.
  const float b1t = std::pow(beta_1, static_cast<float>(t));
  const float b2t = std::pow(beta_2, static_cast<float>(t));
  const float alpha = lr * std::sqrt(1.f - b2t) / (1.f - b1t);
  const float c1 = 1.f - beta_1, c2 = 1.f - beta_2;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    m[i] += (gi - m[i]) * c1;
    v[i] += (gi * gi - v[i]) * c2;
    w[i] -= (m[i] * alpha) / (std::sqrt(v[i]) + epsilon);
  }
}

void rmsprop_update(float* w, const float* g, float* v, float* m, int64_t n, float lr,
                    float rho, float momentum, float epsilon) {
  const float c = 1.f - rho;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    v[i] = rho * v[i] + c * g[i] * g[i];
    const float step = lr * g[i] / std::sqrt(v[i] + epsilon);
    if (m) {
      m[i] = momentum * m[i] + step;
      w[i] -= m[i];
    } else {
      w[i] -= step;
    }
  }
}

void Optimizer::resize(int64_t n) {
  int nslots = cfg_.momentum != 0.f ? 1 : 0;
  if (cfg_.kind == Opt::Adam) nslots = 2;
  if (cfg_.kind == Opt::RMSprop) nslots += 1;
  slots_.resize(nslots);
  for (auto& s : slots_) {
    s.resize(n);
    s.zero();
  }
  iterations = 0;
}

void Optimizer::apply(float* w, const float* g, int64_t n, float lr) {
  switch (cfg_.kind) {
    case Opt::SGD:
      sgd_update(w, g, slots_.empty() ? nullptr : slots_[0].data(), n, lr, cfg_.momentum,
                 cfg_.nesterov);
      break;
    case Opt::Adam:
      adam_update(w, g, slots_[0].data(), slots_[1].data(), n, lr, cfg_.beta_1, cfg_.beta_2,
                  cfg_.epsilon, iterations + 1);
      break;
    case Opt::RMSprop:
      rmsprop_update(w, g, slots_[0].data(), slots_.size() > 1 ? slots_[1].data() : nullptr, n,
                     lr, cfg_.rho, cfg_.momentum, cfg_.epsilon);
      break;
  }
  ++iterations;
}

}  // namespace ember
