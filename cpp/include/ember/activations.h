// activations.h: element-wise activations, softmax and log_softmax, forward and
// backward, with Keras 3's definitions.
#pragma once
#include <cstdint>
#include <limits>
#include <string>

namespace ember {

enum class Act {
  Linear, Relu, Sigmoid, Tanh, Softmax,
  Elu, Selu, Softplus, Softsign, LeakyRelu, Relu6, HardSigmoid, Exponential, LogSoftmax,
  Gelu, GeluApprox, Silu, Mish, HardSilu
};

// Parses Keras's names ("relu", "gelu", "swish" for silu, "hard_swish" for hard_silu,
// ...) and "gelu_approximate" (gelu with approximate=True); throws
// std::invalid_argument naming the ones it knows.
Act act_from_string(const std::string& name);
const char* act_name(Act a);
// Whether the derivative needs the input x (not only the output y).
bool act_needs_input(Act a);
// The parameter of elu (alpha, 1) and leaky_relu (negative_slope, 0.2) when none is given.
constexpr float kDefaultAlpha = std::numeric_limits<float>::quiet_NaN();

// x, y (rows, cols); softmax and log_softmax are taken over cols. y may alias x.
template <class T>
void act_forward(Act a, const T* x, T* y, int64_t rows, int64_t cols,
                 float alpha = kDefaultAlpha);

// dx = dy * f'(x) (softmax: dx = y (dy - sum(dy y)) per row; log_softmax:
// dx = dy - exp(y) sum(dy)). Most derivatives are functions of the output y; those of
// act_needs_input need x too (else it may be null). dx may alias dy.
template <class T>
void act_backward(Act a, const T* y, const T* dy, T* dx, int64_t rows, int64_t cols,
                  float alpha = kDefaultAlpha, const T* x = nullptr);

}  // namespace ember
