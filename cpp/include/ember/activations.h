// activations.h: elementwise activations and softmax, forward and backward.
#pragma once
#include <cstdint>
#include <string>

namespace ember {

enum class Act { Linear, Relu, Sigmoid, Tanh, Softmax };

// Parses "linear", "relu", "sigmoid", "tanh", "softmax"; throws std::invalid_argument.
Act act_from_string(const std::string& name);
const char* act_name(Act a);

// x, y (rows, cols); softmax is taken over cols. y may alias x.
template <class T>
void act_forward(Act a, const T* x, T* y, int64_t rows, int64_t cols);

// Every supported activation's derivative is a function of its output y, so only
// y is saved. dx = dy * f'(x); for softmax dx = y * (dy - sum(dy * y)) per row.
// dx may alias dy.
template <class T>
void act_backward(Act a, const T* y, const T* dy, T* dx, int64_t rows, int64_t cols);

}  // namespace ember
