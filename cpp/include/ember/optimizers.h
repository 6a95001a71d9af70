// optimizers.h: Keras's update rules, each one fused pass over all parameters.
#pragma once
#include <cstdint>
#include <string>
#include <vector>
#include "ember/buffer.h"

namespace ember {

enum class Opt { SGD, Adam, RMSprop };

struct OptimizerConfig {
  Opt kind = Opt::Adam;
  float momentum = 0.f;   // SGD
  bool nesterov = false;  // SGD
  float beta_1 = 0.9f, beta_2 = 0.999f, epsilon = 1e-7f;  // Adam (epsilon: all)
  float rho = 0.9f;  // RMSprop
};

// SGD: without momentum w -= lr g; with it m = mu m - lr g, then w += m
// (or, nesterov, w += mu m - lr g).
void sgd_update(float* w, const float* g, float* m, int64_t n, float lr, float momentum,
                bool nesterov);
// Adam, step t >= 1 (Keras: eps is added to sqrt(v), not to the corrected sqrt):
//   alpha = lr sqrt(1 - b2^t) / (1 - b1^t); m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
//   w -= alpha m / (sqrt(v) + eps)
void adam_update(float* w, const float* g, float* m, float* v, int64_t n, float lr,
                 float beta_1, float beta_2, float epsilon, int64_t t);
// RMSprop (Keras, not centered; eps inside the square root):
//   v = rho v + (1 - rho) g^2; step = lr g / sqrt(v + eps);
//   with momentum: m = momentum m + step; w -= m. Else w -= step.
void rmsprop_update(float* w, const float* g, float* v, float* m, int64_t n, float lr,
                    float rho, float momentum, float epsilon);

// An optimizer and its slot variables (Keras order: momentum; m then v; velocity then momentum).
class Optimizer {
 public:
  explicit Optimizer(const OptimizerConfig& cfg) : cfg_(cfg) {}
  void resize(int64_t n);
  // One update with learning rate lr; iterations counts completed updates.
  void apply(float* w, const float* g, int64_t n, float lr);
  int64_t iterations = 0;
  const OptimizerConfig& config() const { return cfg_; }
  std::vector<FloatBuffer>& slots() { return slots_; }

 private:
  OptimizerConfig cfg_;
  std::vector<FloatBuffer> slots_;
};

}  // namespace ember
