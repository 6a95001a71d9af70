// pooling.cpp: windowed and global max/average pooling, NHWC, forward and backward.
// Forward kernels parallelise over output rows; backward ones over images (every
// write of an image stays in one thread, in a fixed order).
#include "ember/pooling.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "ember/parallel.h"
#include "ember/vector_isa.h"

#include "ember/conv2d.h"
#include "vector_math.h"

namespace ember {
namespace {

void check_positive(const char* what, int64_t v) {
  if (v <= 0)
    throw std::invalid_argument(std::string("Pooling: ") + what +
                                " must be positive. Received: " + what + "=" +
                                std::to_string(v));
}

// The window of output (oy, ox) clipped to the image: rows [y0, y1), cols [x0, x1).
struct Window {
  int64_t y0, y1, x0, x1;
};
inline Window window(const Pool2DShape& s, int64_t oy, int64_t ox) {
  const int64_t ys = oy * s.sh - s.pad_top, xs = ox * s.sw - s.pad_left;
  return {std::max<int64_t>(ys, 0), std::min(ys + s.ph, s.h), std::max<int64_t>(xs, 0),
          std::min(xs + s.pw, s.w)};
}

// Global pooling as one window over all hw positions (seen as an hw x 1 image).
Pool2DShape global_shape(int64_t n, int64_t hw, int64_t c) {
  Pool2DShape s;
  s.n = n; s.h = hw; s.w = 1; s.c = c; s.ph = hw; s.pw = 1; s.sh = hw; s.sw = 1;
  s.oh = 1; s.ow = 1;
  return s;
}

// a beats b: greater, or NaN over a number (first one wins ties).
template <class T>
inline bool beats(T a, T b) {
  return (a > b) | ((a != a) & (b == b));
}

#define EMBER_VECTOR_LOOPS "pooling_loops.inc"
#include "ember/vector_variants.inc"

}  // namespace

Pool2DShape pool2d_shape(int64_t n, int64_t h, int64_t w, int64_t c, int64_t ph, int64_t pw,
                         int64_t sh, int64_t sw, bool same) {
  check_positive("batch", n);
  check_positive("height", h);
  check_positive("width", w);
  check_positive("channels", c);
  check_positive("pool height", ph);
  check_positive("pool width", pw);
  check_positive("stride", std::min(sh, sw));
  Pool2DShape s;
  s.n = n; s.h = h; s.w = w; s.c = c; s.ph = ph; s.pw = pw; s.sh = sh; s.sw = sw;
  s.oh = conv_output_length(h, ph, sh, 1, same);
  s.ow = conv_output_length(w, pw, sw, 1, same);
  if (s.oh <= 0 || s.ow <= 0)
    throw std::invalid_argument("Pooling: the pool (" + std::to_string(ph) + ", " +
                                std::to_string(pw) + ") is larger than its input (" +
                                std::to_string(h) + ", " + std::to_string(w) +
                                ") under padding='valid'");
  s.pad_top = conv_pad_before(h, ph, sh, 1, same);
  s.pad_left = conv_pad_before(w, pw, sw, 1, same);
  return s;
}

void maxpool2d_forward(const Pool2DShape& s, const float* x, float* y, int32_t* argmax) {
  EMBER_VECTOR_CALL(maxpool2d_forward, s, x, y, argmax);
}

void maxpool2d_backward(const Pool2DShape& s, const float* dy, const int32_t* argmax,
                        float* dx, const float* relu_y) {
  EMBER_VECTOR_CALL(maxpool2d_backward, s, dy, argmax, dx, relu_y);
}

void avgpool2d_forward(const Pool2DShape& s, const float* x, float* y) {
  EMBER_VECTOR_CALL(avgpool2d_forward, s, x, y);
}

void avgpool2d_backward(const Pool2DShape& s, const float* dy, float* dx) {
  EMBER_VECTOR_CALL(avgpool2d_backward, s, dy, dx);
}

void global_maxpool_forward(const float* x, float* y, int32_t* argmax, int64_t n, int64_t hw,
                            int64_t c, const float* mask_ids) {
  EMBER_VECTOR_CALL(global_maxpool_forward, x, y, argmax, n, hw, c, mask_ids);
}

void global_maxpool_backward(const float* dy, const int32_t* argmax, float* dx, int64_t n,
                             int64_t hw, int64_t c, const float* relu_y) {
  // Masked forward leaves argmax -1 where a sample had no step: it gets no gradient.
#pragma omp parallel for schedule(static) if (n * hw * c > (1 << 14))
  for (int64_t img = 0; img < n; ++img) {
    float* dxi = dx + img * hw * c;
    std::memset(dxi, 0, sizeof(float) * hw * c);
    for (int64_t ch = 0; ch < c; ++ch) {
      const int32_t p = argmax[img * c + ch];
      if (p < 0 || (relu_y && !(relu_y[img * c + ch] > 0.f))) continue;
      dxi[p * c + ch] += dy[img * c + ch];
    }
  }
}

void global_avgpool_forward(const float* x, float* y, int64_t n, int64_t hw, int64_t c,
                            const float* mask_ids) {
  EMBER_VECTOR_CALL(global_avgpool_forward, x, y, n, hw, c, mask_ids);
}

void global_avgpool_backward(const float* dy, float* dx, int64_t n, int64_t hw, int64_t c,
                             const float* mask_ids) {
  EMBER_VECTOR_CALL(global_avgpool_backward, dy, dx, n, hw, c, mask_ids);
}

// The references share nothing with the kernels above: the padding comes from the
// definition ('same' pads (out - 1) * stride + pool - in in total, the smaller half
// first; 'valid' makes that total <= 0), and every window is walked position by
// position, skipping what falls outside the image. The larger value wins the max, a NaN
// wins over a number, and the first of equal values wins.
namespace {
int64_t pad_before(int64_t in, int64_t out, int64_t pool, int64_t stride) {
  const int64_t total = (out - 1) * stride + pool - in;
  return total > 0 ? total / 2 : 0;
}
}  // namespace

template <class T>
void pool2d_forward_ref(const Pool2DShape& s, bool max, const T* x, T* y) {
  const int64_t top = pad_before(s.h, s.oh, s.ph, s.sh);
  const int64_t left = pad_before(s.w, s.ow, s.pw, s.sw);
  for (int64_t img = 0; img < s.n; ++img)
    for (int64_t oy = 0; oy < s.oh; ++oy)
      for (int64_t ox = 0; ox < s.ow; ++ox)
        for (int64_t ch = 0; ch < s.c; ++ch) {
          T acc = 0;
          int64_t count = 0;
          for (int64_t ky = 0; ky < s.ph; ++ky)
            for (int64_t kx = 0; kx < s.pw; ++kx) {
              const int64_t iy = oy * s.sh - top + ky, ix = ox * s.sw - left + kx;
              if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
              const T v = x[((img * s.h + iy) * s.w + ix) * s.c + ch];
              if (!max)
                acc += v;
              else if (count == 0 || v > acc || (std::isnan(v) && !std::isnan(acc)))
                acc = v;
              ++count;
            }
          y[((img * s.oh + oy) * s.ow + ox) * s.c + ch] = max ? acc : acc / T(count);
        }
}

template <class T>
void pool2d_backward_ref(const Pool2DShape& s, bool max, const T* x, const T* dy, T* dx) {
  const int64_t top = pad_before(s.h, s.oh, s.ph, s.sh);
  const int64_t left = pad_before(s.w, s.ow, s.pw, s.sw);
  for (int64_t i = 0; i < s.n * s.h * s.w * s.c; ++i) dx[i] = 0;
  for (int64_t img = 0; img < s.n; ++img)
    for (int64_t oy = 0; oy < s.oh; ++oy)
      for (int64_t ox = 0; ox < s.ow; ++ox)
        for (int64_t ch = 0; ch < s.c; ++ch) {
          const T g = dy[((img * s.oh + oy) * s.ow + ox) * s.c + ch];
          // First pass: the inside positions (count) and the winner of the max.
          int64_t count = 0, best = -1;
          for (int64_t ky = 0; ky < s.ph; ++ky)
            for (int64_t kx = 0; kx < s.pw; ++kx) {
              const int64_t iy = oy * s.sh - top + ky, ix = ox * s.sw - left + kx;
              if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
              const int64_t at = ((img * s.h + iy) * s.w + ix) * s.c + ch;
              if (best < 0 || x[at] > x[best] || (std::isnan(x[at]) && !std::isnan(x[best])))
                best = at;
              ++count;
            }
          if (max) {
            dx[best] += g;
            continue;
          }
          for (int64_t ky = 0; ky < s.ph; ++ky)
            for (int64_t kx = 0; kx < s.pw; ++kx) {
              const int64_t iy = oy * s.sh - top + ky, ix = ox * s.sw - left + kx;
              if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
              dx[((img * s.h + iy) * s.w + ix) * s.c + ch] += g / T(count);
            }
        }
}

template void pool2d_forward_ref<float>(const Pool2DShape&, bool, const float*, float*);
template void pool2d_forward_ref<double>(const Pool2DShape&, bool, const double*, double*);
template void pool2d_backward_ref<float>(const Pool2DShape&, bool, const float*,
                                         const float*, float*);
template void pool2d_backward_ref<double>(const Pool2DShape&, bool, const double*,
                                          const double*, double*);

}  // namespace ember
