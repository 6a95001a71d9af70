// normalization.cpp: batch normalization kernels and their references.
#include "ember/normalization.h"

#include <algorithm>
#include <cmath>

#include "ember/parallel.h"
#include "ember/vector_isa.h"

namespace ember {
namespace {

constexpr int64_t kBlockRows = 64;  // rows per partial sum (fixed: bits do not move)

int64_t blocks_of(int64_t rows) { return (rows + kBlockRows - 1) / kBlockRows; }

#define EMBER_VECTOR_LOOPS "normalization_loops.inc"
#include "ember/vector_variants.inc"

template <class F, class F2>
void channel_sums(int64_t rows, int64_t c, double* scratch, double* out, double* out2, F f,
                  F2 f2) {
  EMBER_VECTOR_CALL(channel_sums, rows, c, scratch, out, out2, f, f2);
}

void scale_shift(const float* x, float* y, int64_t rows, int64_t c, const float* scale,
                 const float* shift) {
  EMBER_VECTOR_CALL(scale_shift, x, y, rows, c, scale, shift);
}

void batchnorm_dx(const float* x, const float* dy, float* dx, int64_t rows, int64_t c,
                  const float* mean, const float* inv_std, const float* a, const float* b,
                  const float* k) {
  EMBER_VECTOR_CALL(batchnorm_dx, x, dy, dx, rows, c, mean, inv_std, a, b, k);
}

}  // namespace

// Layout: per-block partials (2 * blocks * c), then two sums (2 * c), then 3 * c
// doubles' room for per-channel float factors.
int64_t batchnorm_scratch(int64_t rows, int64_t c) { return 2 * blocks_of(rows) * c + 5 * c; }

namespace {
float* factors(double* scratch, int64_t rows, int64_t c) {
  return reinterpret_cast<float*>(scratch + 2 * blocks_of(rows) * c + 2 * c);
}
}  // namespace

void batchnorm_forward_train(const float* x, float* y, int64_t rows, int64_t c,
                             const float* gamma, const float* beta, float eps, float momentum,
                             float* moving_mean, float* moving_var, float* mean,
                             float* inv_std, double* scratch) {
  double* sum = scratch + 2 * blocks_of(rows) * c;
  double* sq = sum + c;
  // One pass: sums of x and x^2 in double (var = E[x^2] - mean^2 loses about
  // 1e-16 mean^2 to cancellation, far below float's precision unless |mean| / std
  // passes 10^4, where eps dominates the variance anyway).
  channel_sums(rows, c, scratch, sum, sq,
               [x, c](int64_t r, int64_t j) { return static_cast<double>(x[r * c + j]); },
               [x, c](int64_t r, int64_t j) {
                 const double v = x[r * c + j];
                 return v * v;
               });
  float* scale = factors(scratch, rows, c);
  float* shift = scale + c;
  for (int64_t j = 0; j < c; ++j) {
    const double m = sum[j] / rows;
    const double var = std::max(sq[j] / rows - m * m, 0.0);
    mean[j] = static_cast<float>(m);
    const double is = 1.0 / std::sqrt(var + eps);
    inv_std[j] = static_cast<float>(is);
    const double g = gamma ? gamma[j] : 1.0;
    scale[j] = static_cast<float>(is * g);
    shift[j] = static_cast<float>((beta ? beta[j] : 0.0) - m * is * g);
    if (!moving_mean) continue;  // a replayed forward: the statistics moved already
    moving_mean[j] = moving_mean[j] * momentum + static_cast<float>(m) * (1.f - momentum);
    moving_var[j] = moving_var[j] * momentum + static_cast<float>(var) * (1.f - momentum);
  }
  scale_shift(x, y, rows, c, scale, shift);
}

void batchnorm_infer_factors(int64_t c, const float* gamma, const float* beta,
                             const float* moving_mean, const float* moving_var, float eps,
                             float* scale, float* shift) {
  for (int64_t j = 0; j < c; ++j) {
    const double is = 1.0 / std::sqrt(static_cast<double>(moving_var[j]) + eps);
    const double g = gamma ? gamma[j] : 1.0;
    scale[j] = static_cast<float>(is * g);
    shift[j] = static_cast<float>((beta ? beta[j] : 0.0) - moving_mean[j] * is * g);
  }
}

void batchnorm_forward_infer(const float* x, float* y, int64_t rows, int64_t c,
                             const float* gamma, const float* beta, const float* moving_mean,
                             const float* moving_var, float eps, float* work) {
  batchnorm_infer_factors(c, gamma, beta, moving_mean, moving_var, eps, work, work + c);
  scale_shift(x, y, rows, c, work, work + c);
}

void batchnorm_backward_train(const float* x, const float* dy, float* dx, int64_t rows,
                              int64_t c, const float* gamma, const float* mean,
                              const float* inv_std, float* dgamma, float* dbeta,
                              double* scratch) {
  double* sdy = scratch + 2 * blocks_of(rows) * c;
  double* sdyx = sdy + c;
  channel_sums(rows, c, scratch, sdy, sdyx,
               [dy, c](int64_t r, int64_t j) { return static_cast<double>(dy[r * c + j]); },
               [x, dy, c, mean, inv_std](int64_t r, int64_t j) {
                 const double xhat = (static_cast<double>(x[r * c + j]) - mean[j]) * inv_std[j];
                 return dy[r * c + j] * xhat;
               });
  for (int64_t j = 0; j < c; ++j) {
    if (dbeta) dbeta[j] = static_cast<float>(sdy[j]);
    if (dgamma) dgamma[j] = static_cast<float>(sdyx[j]);
  }
  if (!dx) return;
  float* a = factors(scratch, rows, c);  // dx = k (dy - a - xhat b)
  float* b = a + c;
  float* k = b + c;
  for (int64_t j = 0; j < c; ++j) {
    a[j] = static_cast<float>(sdy[j] / rows);
    b[j] = static_cast<float>(sdyx[j] / rows);
    k[j] = (gamma ? gamma[j] : 1.f) * inv_std[j];
  }
  batchnorm_dx(x, dy, dx, rows, c, mean, inv_std, a, b, k);
}

void batchnorm_backward_infer(const float* x, const float* dy, float* dx, int64_t rows,
                              int64_t c, const float* gamma, const float* moving_mean,
                              const float* moving_var, float eps, float* dgamma, float* dbeta,
                              double* scratch) {
  float* is = factors(scratch, rows, c);
  for (int64_t j = 0; j < c; ++j)
    is[j] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(moving_var[j]) + eps));
  if (dgamma || dbeta) {
    double* sdy = scratch + 2 * blocks_of(rows) * c;
    double* sdyx = sdy + c;
    channel_sums(rows, c, scratch, sdy, sdyx,
                 [&](int64_t r, int64_t j) { return dy[r * c + j]; },
                 [&](int64_t r, int64_t j) {
                   return dy[r * c + j] * (static_cast<double>(x[r * c + j]) - moving_mean[j]) *
                          is[j];
                 });
    for (int64_t j = 0; j < c; ++j) {
      if (dbeta) dbeta[j] = static_cast<float>(sdy[j]);
      if (dgamma) dgamma[j] = static_cast<float>(sdyx[j]);
    }
  }
  if (!dx) return;
#pragma omp parallel for schedule(static) if (rows * c > (1 << 15))
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < c; ++j) dx[r * c + j] = dy[r * c + j] * (gamma ? gamma[j] : 1.f) * is[j];
}

void layernorm_forward(const float* x, float* y, int64_t rows, int64_t c, const float* gamma,
                       const float* beta, float eps, float* mean, float* inv_std) {
#pragma omp parallel for schedule(static) if (rows * c > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * c;
    double m = 0, v = 0;
    for (int64_t j = 0; j < c; ++j) m += xr[j];
    m /= c;
    for (int64_t j = 0; j < c; ++j) v += (xr[j] - m) * (xr[j] - m);
    const double is = 1.0 / std::sqrt(v / c + eps);
    if (mean) mean[r] = static_cast<float>(m);
    if (inv_std) inv_std[r] = static_cast<float>(is);
    const float mf = static_cast<float>(m), isf = static_cast<float>(is);
    for (int64_t j = 0; j < c; ++j)
      y[r * c + j] = (xr[j] - mf) * isf * (gamma ? gamma[j] : 1.f) + (beta ? beta[j] : 0.f);
  }
}

void layernorm_backward(const float* x, const float* dy, float* dx, int64_t rows, int64_t c,
                        const float* gamma, const float* mean, const float* inv_std,
                        float* dgamma, float* dbeta, double* scratch) {
  if (dgamma || dbeta) {
    double* sdy = scratch + 2 * blocks_of(rows) * c;
    double* sdyx = sdy + c;
    channel_sums(rows, c, scratch, sdy, sdyx, [&](int64_t r, int64_t j) { return dy[r * c + j]; },
                 [&](int64_t r, int64_t j) {
                   return dy[r * c + j] * (x[r * c + j] - mean[r]) * inv_std[r];
                 });
    for (int64_t j = 0; j < c; ++j) {
      if (dbeta) dbeta[j] = static_cast<float>(sdy[j]);
      if (dgamma) dgamma[j] = static_cast<float>(sdyx[j]);
    }
  }
  if (!dx) return;
#pragma omp parallel for schedule(static) if (rows * c > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * c;
    const float* dyr = dy + r * c;
    double sg = 0, sgx = 0;
    for (int64_t j = 0; j < c; ++j) {
      const double g = dyr[j] * (gamma ? gamma[j] : 1.f);
      sg += g;
      sgx += g * (xr[j] - mean[r]) * inv_std[r];
    }
    const float a = static_cast<float>(sg / c), b = static_cast<float>(sgx / c);
    for (int64_t j = 0; j < c; ++j) {
      const float xh = (xr[j] - mean[r]) * inv_std[r];
      dx[r * c + j] = inv_std[r] * (dyr[j] * (gamma ? gamma[j] : 1.f) - a - xh * b);
    }
  }
}

void groupnorm_forward(const float* x, float* y, int64_t n, int64_t p, int64_t c, int64_t groups,
                       const float* gamma, const float* beta, float eps, float* mean,
                       float* inv_std) {
  const int64_t cg = c / groups;
#pragma omp parallel for schedule(static) if (n * p * c > (1 << 15))
  for (int64_t t = 0; t < n * groups; ++t) {
    const int64_t b = t / groups, g = t % groups;
    const float* xs = x + b * p * c + g * cg;
    double m = 0, v = 0;
    for (int64_t i = 0; i < p; ++i)
      for (int64_t j = 0; j < cg; ++j) m += xs[i * c + j];
    m /= static_cast<double>(p * cg);
    for (int64_t i = 0; i < p; ++i)
      for (int64_t j = 0; j < cg; ++j) v += (xs[i * c + j] - m) * (xs[i * c + j] - m);
    const double is = 1.0 / std::sqrt(v / static_cast<double>(p * cg) + eps);
    if (mean) mean[t] = static_cast<float>(m);
    if (inv_std) inv_std[t] = static_cast<float>(is);
    const float mf = static_cast<float>(m), isf = static_cast<float>(is);
    float* ys = y + b * p * c + g * cg;
    for (int64_t i = 0; i < p; ++i)
      for (int64_t j = 0; j < cg; ++j) {
        const int64_t ch = g * cg + j;
        ys[i * c + j] = (xs[i * c + j] - mf) * isf * (gamma ? gamma[ch] : 1.f) +
                        (beta ? beta[ch] : 0.f);
      }
  }
}

void groupnorm_backward(const float* x, const float* dy, float* dx, int64_t n, int64_t p,
                        int64_t c, int64_t groups, const float* gamma, const float* mean,
                        const float* inv_std, float* dgamma, float* dbeta, double* scratch) {
  const int64_t cg = c / groups, rows = n * p;
  if (dgamma || dbeta) {
    double* sdy = scratch + 2 * blocks_of(rows) * c;
    double* sdyx = sdy + c;
    channel_sums(rows, c, scratch, sdy, sdyx, [&](int64_t r, int64_t j) { return dy[r * c + j]; },
                 [&](int64_t r, int64_t j) {
                   const int64_t t = (r / p) * groups + j / cg;
                   return dy[r * c + j] * (x[r * c + j] - mean[t]) * inv_std[t];
                 });
    for (int64_t j = 0; j < c; ++j) {
      if (dbeta) dbeta[j] = static_cast<float>(sdy[j]);
      if (dgamma) dgamma[j] = static_cast<float>(sdyx[j]);
    }
  }
  if (!dx) return;
#pragma omp parallel for schedule(static) if (n * p * c > (1 << 15))
  for (int64_t t = 0; t < n * groups; ++t) {
    const int64_t b = t / groups, g = t % groups, off = b * p * c + g * cg;
    double sg = 0, sgx = 0;
    for (int64_t i = 0; i < p; ++i)
      for (int64_t j = 0; j < cg; ++j) {
        const int64_t e = off + i * c + j;
        const double gv = dy[e] * (gamma ? gamma[g * cg + j] : 1.f);
        sg += gv;
        sgx += gv * (x[e] - mean[t]) * inv_std[t];
      }
    const float a = static_cast<float>(sg / (p * cg)), bb = static_cast<float>(sgx / (p * cg));
    for (int64_t i = 0; i < p; ++i)
      for (int64_t j = 0; j < cg; ++j) {
        const int64_t e = off + i * c + j;
        const float xh = (x[e] - mean[t]) * inv_std[t];
        dx[e] = inv_std[t] * (dy[e] * (gamma ? gamma[g * cg + j] : 1.f) - a - xh * bb);
      }
  }
}

template <class T>
void batchnorm_forward_ref(const T* x, T* y, int64_t rows, int64_t c, const T* gamma,
                           const T* beta, T eps) {
  for (int64_t j = 0; j < c; ++j) {
    T m = 0, v = 0;
    for (int64_t r = 0; r < rows; ++r) m += x[r * c + j];
    m /= rows;
    for (int64_t r = 0; r < rows; ++r) v += (x[r * c + j] - m) * (x[r * c + j] - m);
    v /= rows;
    for (int64_t r = 0; r < rows; ++r)
      y[r * c + j] = (x[r * c + j] - m) / std::sqrt(v + eps) * (gamma ? gamma[j] : T(1)) +
                     (beta ? beta[j] : T(0));
  }
}

template <class T>
void batchnorm_backward_ref(const T* x, const T* dy, T* dx, int64_t rows, int64_t c,
                            const T* gamma, T eps, T* dgamma, T* dbeta) {
  for (int64_t j = 0; j < c; ++j) {
    T m = 0, v = 0;
    for (int64_t r = 0; r < rows; ++r) m += x[r * c + j];
    m /= rows;
    for (int64_t r = 0; r < rows; ++r) v += (x[r * c + j] - m) * (x[r * c + j] - m);
    v /= rows;
    const T is = T(1) / std::sqrt(v + eps), g = gamma ? gamma[j] : T(1);
    T sdy = 0, sdyx = 0;
    for (int64_t r = 0; r < rows; ++r) {
      sdy += dy[r * c + j];
      sdyx += dy[r * c + j] * (x[r * c + j] - m) * is;
    }
    if (dgamma) dgamma[j] = sdyx;
    if (dbeta) dbeta[j] = sdy;
    for (int64_t r = 0; r < rows; ++r) {
      const T xh = (x[r * c + j] - m) * is;
      dx[r * c + j] = g * is * (dy[r * c + j] - sdy / rows - xh * sdyx / rows);
    }
  }
}

template void batchnorm_forward_ref<float>(const float*, float*, int64_t, int64_t, const float*,
                                           const float*, float);
template void batchnorm_forward_ref<double>(const double*, double*, int64_t, int64_t,
                                            const double*, const double*, double);
template void batchnorm_backward_ref<float>(const float*, const float*, float*, int64_t, int64_t,
                                            const float*, float, float*, float*);
template void batchnorm_backward_ref<double>(const double*, const double*, double*, int64_t,
                                             int64_t, const double*, double, double*, double*);

}  // namespace ember
