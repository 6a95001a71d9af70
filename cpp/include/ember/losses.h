// losses.h: losses with their gradients, fused with a final softmax or sigmoid.
#pragma once
#include <cstdint>
#include <string>
#include "ember/activations.h"

namespace ember {

enum class Loss {
  SparseCategoricalCrossentropy,
  CategoricalCrossentropy,
  BinaryCrossentropy,
  MeanSquaredError,
  MeanAbsoluteError,
  Huber,         // param: delta
  Hinge,         // 0/1 targets become -1/1 when the whole batch is 0/1 (Keras)
  KLDivergence,  // sum over the last axis, both sides clipped to [1e-7, 1]
  MeanSquaredLogarithmicError,  // mean (log(max(p, eps) + 1) - log(max(y, eps) + 1))^2
  MeanAbsolutePercentageError,  // 100 mean |y - p| / max(|y|, eps)
  LogCosh,                      // mean log(cosh(p - y))
  Poisson,                      // mean p - y log(p + eps)
  SquaredHinge,                 // mean max(1 - t p, 0)^2, t as for Hinge
  CategoricalHinge,             // max(max_j (1 - y_j) p_j - sum_j y_j p_j + 1, 0)
  CosineSimilarity,             // -sum normalize(y) normalize(p), norms at least eps
  // Overlap losses: one value per row of c elements (a whole batch is passed as one
  // row). tp = sum y p, Sy = sum y, Sp = sum p.
  Dice,     // 1 - 2 tp / (Sy + Sp + eps)
  Tversky,  // 1 - tp / (tp + param (Sy - tp) + param2 (Sp - tp) + eps): alpha, beta
};

// Parses Keras names and aliases; throws std::invalid_argument.
Loss loss_from_string(const std::string& name);
// True when the loss's targets are integer class ids rather than float arrays.
inline bool loss_sparse(Loss l) { return l == Loss::SparseCategoricalCrossentropy; }

// True when the gradient is taken straight at the pre-activation of a final
// `act` (crossentropy on the probabilities of a softmax or sigmoid).
bool loss_fuses(Loss l, bool from_logits, Act act);

// One batch. out (n, c) is the model output (logits when from_logits). Targets are
// labels (n) for the sparse loss, else y (n, c). sw (n) sample weights or null.
// Writes grad (n, c) = scale * sw[i] * dL_i/d(input) where input is out, or the
// pre-activation when loss_fuses(l, from_logits, act). Returns sum_i sw[i] * L_i.
// Keras semantics: probabilities are renormalised and clipped to [1e-7, 1 - 1e-7]
// (the clip zeroes the gradient where it bites); per-sample losses average over
// the last axis for binary crossentropy, mean squared/absolute error, Huber and
// hinge. `param` is Huber's delta, and for the categorical and binary crossentropies
// 1 - label_smoothing (the share of the target kept; the rest spread evenly);
// Tversky's alpha and beta are `param` and `param2`.
// Throws std::invalid_argument for a label outside [0, c).
template <class T>
double loss_forward_backward(Loss l, bool from_logits, Act act, const T* out,
                             const int32_t* labels, const T* y, const T* sw, T* grad,
                             int64_t n, int64_t c, T scale, T param = T(1),
                             T param2 = T(0));

// The per-sample losses only (grad not computed); returns their weighted sum and,
// when per_sample is non-null, writes each unweighted L_i there.
template <class T>
double loss_forward(Loss l, bool from_logits, const T* out, const int32_t* labels,
                    const T* y, const T* sw, int64_t n, int64_t c, T param = T(1),
                    T* per_sample = nullptr, T param2 = T(0));

}  // namespace ember
