// optimizers.h: Keras's update rules (SGD, Adam/AdamW, RMSprop, Adagrad, Adamax, Nadam,
// Lion, Adadelta) with its
// gradient clipping and decoupled weight decay, one fused pass over the parameters.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>
#include "ember/buffer.h"
#include "ember/embedding.h"
#include "ember/variable.h"

namespace ember {

enum class Opt { SGD, Adam, RMSprop, Adagrad, Adamax, Nadam, Lion, Adadelta, Ftrl };

struct OptimizerConfig {
  Opt kind = Opt::Adam;
  float momentum = 0.f;   // SGD, RMSprop
  bool nesterov = false;  // SGD
  float beta_1 = 0.9f, beta_2 = 0.999f;  // Adam, Adamax, Nadam, Lion
  bool amsgrad = false;                  // Adam
  float epsilon = 1e-7f;                 // Adam, RMSprop, Adagrad, Adamax, Nadam, Adadelta
  float rho = 0.9f;                      // RMSprop, Adadelta
  bool centered = false;                 // RMSprop
  float initial_accumulator_value = 0.1f;  // Adagrad, Ftrl
  float lr_power = -0.5f, l1 = 0.f, l2 = 0.f, l2_shrinkage = 0.f, ftrl_beta = 0.f;  // Ftrl
  // Keras's base-optimizer options; 0 means off. At most one clip is set.
  float weight_decay = 0.f, clipnorm = 0.f, clipvalue = 0.f, global_clipnorm = 0.f;
  // Keras's gradient_accumulation_steps (0: off): each call adds its gradients to an
  // accumulator; every steps-th call updates with (accumulated + g) / steps.
  int64_t accumulation_steps = 0;
  // Keras's use_ema: after each call, average = m average + (1 - m) w with m =
  // ema_momentum (0 while no update has been made); every ema_overwrite_frequency
  // updates (0: never) the weights take their averages.
  bool use_ema = false;
  float ema_momentum = 0.99f;
  int64_t ema_overwrite_frequency = 0;
};

// How the raw gradient is turned into the one the rule sees, per variable (Keras's
// order: clip, then decay the weight, then the rule):
//   g' = clip(g * scale, -clipvalue, clipvalue);  w -= w * decay   (decay = wd * lr)
struct GradPrep {
  float scale = 1.f;
  float clipvalue = 0.f;  // 0: no clipping
  float decay = 0.f;
};

// SGD: without momentum w -= lr g; with it m = mu m - lr g, then w += m
// (or, nesterov, w += mu m - lr g).
void sgd_update(float* w, const float* g, float* m, int64_t n, float lr, float momentum,
                bool nesterov, const GradPrep& p = {});
// Adam, step t >= 1 (Keras: eps is added to sqrt(v), not to the corrected sqrt):
//   alpha = lr sqrt(1 - b2^t) / (1 - b1^t); m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
//   amsgrad: vhat = max(vhat, v), used in place of v;  w -= alpha m / (sqrt(v) + eps)
void adam_update(float* w, const float* g, float* m, float* v, float* vhat, int64_t n,
                 float lr, float beta_1, float beta_2, float epsilon, int64_t t,
                 const GradPrep& p = {});
// RMSprop (Keras; eps inside the square root):
//   v = rho v + (1 - rho) g^2; centered: a = rho a + (1 - rho) g, den = v - a^2 + eps,
//   else den = v + eps; step = lr g / sqrt(den);
//   with momentum: m = momentum m + step; w -= m. Else w -= step.
void rmsprop_update(float* w, const float* g, float* v, float* m, float* a, int64_t n,
                    float lr, float rho, float momentum, float epsilon,
                    const GradPrep& p = {});
// Adagrad (Keras): acc += g^2; w -= lr g / sqrt(acc + eps). acc starts at
// initial_accumulator_value.
void adagrad_update(float* w, const float* g, float* acc, int64_t n, float lr, float epsilon,
                    const GradPrep& p = {});

// Adamax (Keras), step t: m += (g - m)(1 - b1); u = max(b2 u, |g|);
//   w -= lr m / ((1 - b1^t)(u + eps)).
// Nadam (Keras 3), step t, with mu_s = b1 (1 - 0.5 * 0.96^s) and P_t = prod mu_1..t:
//   m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
//   m^ = mu_{t+1} m / (1 - P_t mu_{t+1}) + (1 - mu_t) g / (1 - P_t); v^ = v / (1 - b2^t);
//   w -= lr m^ / (sqrt(v^) + eps).
// Lion (Keras): w -= lr sign(b1 m + (1 - b1) g); then m = b2 m + (1 - b2) g.
// Adadelta (Keras): A = rho A + (1 - rho) g^2; d = -sqrt(D + eps) g / sqrt(A + eps);
//   D = rho D + (1 - rho) d^2; w += lr d.
// These and the rules above also run inside Optimizer::apply; the free functions are
// for tests.
void optimizer_step(Opt kind, float* w, const float* g, float* s0, float* s1, int64_t n,
                    float lr, float beta_1, float beta_2, float rho, float epsilon,
                    int64_t t, const GradPrep& p = {});

// Keras's weight regularizers on w (n): returns l1 sum|w| + l2 sum w^2 (in double, in a
// fixed order) and, when g is not null, adds its gradient l1 sign(w) + 2 l2 w to g
// (sign(0) = +1, as Keras on JAX).
double add_penalty(const float* w, float* g, int64_t n, float l1, float l2);

// Keras's weight constraints, applied after each update. The variable is seen as
// (rows, cols): the norms run over the rows (the constraint's axes, leading ones) for
// each column. With n = the column's L2 norm and eps = 1e-7:
//   MaxNorm: w *= min(n, max) / (eps + n);  UnitNorm: w /= eps + n;
//   MinMaxNorm: w *= (rate clip(n, min, max) + (1 - rate) n) / (eps + n);  NonNeg: w *= w >= 0.
enum class ConstraintKind { None, MaxNorm, NonNeg, UnitNorm, MinMaxNorm };
struct Constraint {
  ConstraintKind kind = ConstraintKind::None;
  float min_value = 0.f, max_value = 0.f, rate = 1.f;
  int64_t rows = 1;
};
void apply_constraint(const Constraint& c, float* w, int64_t n);

// Sum of squares of x[0..n) in double, in an order that does not depend on the
// thread count (fixed chunks, summed in order).
double sum_squares(const float* x, int64_t n);

// A variable as one update sees it: its storage, its gradient (dense, or the rows
// of an embedding table: the update still visits every row, absent ones with a zero
// gradient, so it equals the dense update, Keras's semantics, without a dense gradient
// ever being written), and its slots (Optimizer::slots_for).
struct OptVar {
  Variable* var = nullptr;
  const float* grad = nullptr;
  const SparseRows* sparse = nullptr;
  bool decay = true;  // weight decay applies (Keras: all, unless excluded)
  std::vector<FloatBuffer>* slots = nullptr;
};

// An optimizer and its slot variables, keyed by variable as in Keras, each slot as
// long as its variable (Keras order: SGD momentum; Adam m, v[, vhat]; RMSprop
// velocity[, momentum][, average_gradient]; Adagrad accumulator; Adamax m, u; Nadam m,
// v; Lion m; Adadelta accumulated gradient, accumulated delta), then the moving
// average (use_ema) and the gradient accumulator (accumulation_steps). Models compiled
// with one optimizer share it; a frozen variable never gets slots.
class Optimizer {
 public:
  explicit Optimizer(const OptimizerConfig& cfg);
  // The slots of v, created (at their initial value) on first use. The reference
  // stays valid while the optimizer lives.
  std::vector<FloatBuffer>& slots_for(const VariablePtr& v);
  // The slots of v, or null when it has none yet.
  std::vector<FloatBuffer>* find_slots(const Variable* v) {
    auto it = slots_.find(v);
    return it == slots_.end() ? nullptr : &it->second;
  }
  // Slots per variable of this optimizer's kind and settings: the rule's, then the
  // moving average's (ema_slot(), or -1) and the accumulator's (accumulator_slot()).
  int num_slots() const;
  int rule_slots() const;
  int ema_slot() const { return cfg_.use_ema ? rule_slots() : -1; }
  int accumulator_slot() const {
    return cfg_.accumulation_steps > 1 ? rule_slots() + cfg_.use_ema : -1;
  }
  // One call at learning rate lr: an update of every variable (or, accumulating, its
  // gradients added up). iterations counts the calls (Keras's _iterations).
  void apply(const std::vector<OptVar>& vars, float lr);
  int64_t iterations = 0;
  // The updates made (Keras's `iterations`: the calls over the accumulation steps).
  int64_t updates() const {
    return cfg_.accumulation_steps > 1 ? iterations / cfg_.accumulation_steps : iterations;
  }
  const OptimizerConfig& config() const { return cfg_; }
  // The variables with slots, in the order they got them.
  const std::vector<VariablePtr>& tracked() const { return order_; }

 private:
  void update(float* w, const float* g, float* const* slot, int64_t n, float lr,
              const GradPrep& p, const SparseRows* sparse);
  void update_all(const std::vector<OptVar>& vars, float lr);
  // Adds each gradient to its accumulator; on an update call, turns the accumulators
  // into the mean gradients and returns the variables reading them (else null).
  const std::vector<OptVar>* accumulate(const std::vector<OptVar>& vars, bool update_now);
  void update_averages(const std::vector<OptVar>& vars);
  OptimizerConfig cfg_;
  std::vector<OptVar> accumulated_;
  std::unordered_map<const Variable*, std::vector<FloatBuffer>> slots_;
  std::vector<VariablePtr> order_;  // keeps the tracked variables alive
  // Nadam's product of momentum factors mu_1 .. mu_t (Keras's u_product), valid at
  // iteration nadam_at_ (recomputed from 1 when iterations was set from outside).
  float nadam_product_ = 1.f;
  int64_t nadam_at_ = 0;
};

}  // namespace ember
