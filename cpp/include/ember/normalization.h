// normalization.h: batch normalization over the last axis (channels), forward and
// backward, in training mode (batch statistics) and inference mode (moving ones).
#pragma once
#include <cstdint>

namespace ember {

// Doubles of scratch the training and backward kernels need for `rows` rows of `c`
// channels (nothing is allocated inside them).
int64_t batchnorm_scratch(int64_t rows, int64_t c);

// x, y (rows, c); gamma, beta (c) or null (scale 1, shift 0). Per channel:
// mean = sum x / rows, var = sum (x - mean)^2 / rows (biased, as Keras),
// y = (x - mean) / sqrt(var + eps) * gamma + beta; mean and inv_std (c) are kept for
// backward; moving = moving * momentum + batch * (1 - momentum) (null moving arrays:
// left alone). Sums run over fixed blocks of rows, added in block order: the bits do
// not depend on the thread count.
void batchnorm_forward_train(const float* x, float* y, int64_t rows, int64_t c,
                             const float* gamma, const float* beta, float eps, float momentum,
                             float* moving_mean, float* moving_var, float* mean,
                             float* inv_std, double* scratch);
// The inference transform as y = x * scale + shift per channel (scale and shift: c
// floats each, from the moving statistics).
void batchnorm_infer_factors(int64_t c, const float* gamma, const float* beta,
                             const float* moving_mean, const float* moving_var, float eps,
                             float* scale, float* shift);
// y = (x - moving_mean) / sqrt(moving_var + eps) * gamma + beta, as x * scale + shift;
// work: 2 * c floats.
void batchnorm_forward_infer(const float* x, float* y, int64_t rows, int64_t c,
                             const float* gamma, const float* beta, const float* moving_mean,
                             const float* moving_var, float eps, float* work);
// The training forward's backward. With xhat = (x - mean) inv_std, g = dy gamma:
//   dbeta = sum dy, dgamma = sum dy xhat,
//   dx = inv_std (g - mean_r(g) - xhat mean_r(g xhat))
// (the batch statistics depend on every row). dx, dgamma, dbeta each skipped when null.
void batchnorm_backward_train(const float* x, const float* dy, float* dx, int64_t rows,
                              int64_t c, const float* gamma, const float* mean,
                              const float* inv_std, float* dgamma, float* dbeta,
                              double* scratch);
// The inference forward's backward (a frozen layer inside a training step): the
// statistics are constants, dx = dy gamma / sqrt(moving_var + eps).
void batchnorm_backward_infer(const float* x, const float* dy, float* dx, int64_t rows,
                              int64_t c, const float* gamma, const float* moving_mean,
                              const float* moving_var, float eps, float* dgamma, float* dbeta,
                              double* scratch);

// Layer normalization of each row of x (rows, c) over its c values:
// y = (x - mean) / sqrt(var + eps) * gamma + beta (biased variance, as Keras); the row
// statistics go to mean and inv_std (rows) when they are not null.
void layernorm_forward(const float* x, float* y, int64_t rows, int64_t c, const float* gamma,
                       const float* beta, float eps, float* mean, float* inv_std);
// With xhat and g = dy gamma per row: dx = inv_std (g - mean(g) - xhat mean(g xhat));
// dgamma = sum_rows dy xhat, dbeta = sum_rows dy (fixed-order block sums; scratch:
// batchnorm_scratch(rows, c) doubles). dx, dgamma, dbeta each skipped when null.
void layernorm_backward(const float* x, const float* dy, float* dx, int64_t rows, int64_t c,
                        const float* gamma, const float* mean, const float* inv_std,
                        float* dgamma, float* dbeta, double* scratch);

// Group normalization of x (n, p, c): each sample's channels split into `groups` groups
// of c / groups; each group normalized over its p x (c / groups) values (biased variance),
// then y = xhat * gamma[j] + beta[j] per channel. The group statistics (n * groups) go to
// mean and inv_std when not null.
void groupnorm_forward(const float* x, float* y, int64_t n, int64_t p, int64_t c, int64_t groups,
                       const float* gamma, const float* beta, float eps, float* mean,
                       float* inv_std);
// Per group, with g = dy gamma: dx = inv_std (g - mean(g) - xhat mean(g xhat));
// dgamma[j], dbeta[j] = sums over samples and positions of dy xhat, dy (fixed-order block
// sums; scratch: batchnorm_scratch(n * p, c) doubles). Each output skipped when null.
void groupnorm_backward(const float* x, const float* dy, float* dx, int64_t n, int64_t p,
                        int64_t c, int64_t groups, const float* gamma, const float* mean,
                        const float* inv_std, float* dgamma, float* dbeta, double* scratch);

// Plain references in any precision (training mode), for tests.
template <class T>
void batchnorm_forward_ref(const T* x, T* y, int64_t rows, int64_t c, const T* gamma,
                           const T* beta, T eps);
template <class T>
void batchnorm_backward_ref(const T* x, const T* dy, T* dx, int64_t rows, int64_t c,
                            const T* gamma, T eps, T* dgamma, T* dbeta);

}  // namespace ember
