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

#include "ember/conv2d.h"

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

EMBER_VECTOR_CLONES
void maxpool2d_forward(const Pool2DShape& s, const float* x, float* y, int32_t* argmax) {
  const int64_t c = s.c;
#pragma omp parallel for schedule(static) if (s.n * s.oh * s.ow * c > (1 << 12))
  for (int64_t r = 0; r < s.n * s.oh; ++r) {
    const int64_t img = r / s.oh, oy = r % s.oh;
    const float* xi = x + img * s.h * s.w * c;
    for (int64_t ox = 0; ox < s.ow; ++ox) {
      const Window win = window(s, oy, ox);
      const int64_t o = (r * s.ow + ox) * c;
      float* yo = y + o;
      int32_t* ao = argmax ? argmax + o : nullptr;
      const int64_t first = win.y0 * s.w + win.x0;
      const float* x0 = xi + first * c;
      for (int64_t ch = 0; ch < c; ++ch) yo[ch] = x0[ch];
      if (ao)
        for (int64_t ch = 0; ch < c; ++ch) ao[ch] = static_cast<int32_t>(first);
      for (int64_t iy = win.y0; iy < win.y1; ++iy)
        for (int64_t ix = win.x0; ix < win.x1; ++ix) {
          const int64_t pos = iy * s.w + ix;
          if (pos == first) continue;
          const float* xp = xi + pos * c;
          if (ao) {
            // Selects, not branches: random data would mispredict half of them.
            const int32_t p32 = static_cast<int32_t>(pos);
            for (int64_t ch = 0; ch < c; ++ch) {
              const bool take = beats(xp[ch], yo[ch]);
              yo[ch] = take ? xp[ch] : yo[ch];
              ao[ch] = take ? p32 : ao[ch];
            }
          } else {
            for (int64_t ch = 0; ch < c; ++ch) yo[ch] = beats(xp[ch], yo[ch]) ? xp[ch] : yo[ch];
          }
        }
    }
  }
}

EMBER_VECTOR_CLONES
void maxpool2d_backward(const Pool2DShape& s, const float* dy, const int32_t* argmax,
                        float* dx, const float* relu_y) {
  const int64_t c = s.c, in = s.h * s.w * c, out = s.oh * s.ow * c;
  // Windows apart (none overlaps another), and tiling the input (every position in one).
  const bool apart = s.sh >= s.ph && s.sw >= s.pw;
  const bool tiled = apart && s.sh == s.ph && s.sw == s.pw && s.oh * s.sh == s.h &&
                     s.ow * s.sw == s.w && s.pad_top == 0 && s.pad_left == 0;
#pragma omp parallel for schedule(static) if (s.n * in > (1 << 14))
  for (int64_t img = 0; img < s.n; ++img) {
    float* d = dx + img * in;
    if (!tiled) std::memset(d, 0, sizeof(float) * in);
    const float* g = dy + img * out;
    const int32_t* a = argmax + img * out;
    const float* y = relu_y ? relu_y + img * out : nullptr;
    if (apart) {
      // Windows that do not overlap: each position of dx lies in one window at most, so
      // each is written once, by a select the loop vectorizes (a scatter would not).
      // 0 + v, as the scatter adds v to the zeroed dx (-0 becomes +0 there too).
      for (int64_t oy = 0; oy < s.oh; ++oy)
        for (int64_t ox = 0; ox < s.ow; ++ox) {
          const Window win = window(s, oy, ox);
          const int64_t o = (oy * s.ow + ox) * c;
          for (int64_t iy = win.y0; iy < win.y1; ++iy)
            for (int64_t ix = win.x0; ix < win.x1; ++ix) {
              const int32_t pos = static_cast<int32_t>(iy * s.w + ix);
              float* dp = d + pos * c;
              if (y)
                for (int64_t ch = 0; ch < c; ++ch) {
                  const float v = g[o + ch];
                  dp[ch] = 0.f + ((a[o + ch] == pos) & (y[o + ch] > 0.f) ? v : 0.f);
                }
              else
                for (int64_t ch = 0; ch < c; ++ch) {
                  const float v = g[o + ch];
                  dp[ch] = 0.f + (a[o + ch] == pos ? v : 0.f);
                }
            }
        }
    } else if (y) {
      for (int64_t p = 0; p < s.oh * s.ow; ++p)
        for (int64_t ch = 0; ch < c; ++ch)
          d[a[p * c + ch] * c + ch] += y[p * c + ch] > 0.f ? g[p * c + ch] : 0.f;
    } else {
      for (int64_t p = 0; p < s.oh * s.ow; ++p)
        for (int64_t ch = 0; ch < c; ++ch) d[a[p * c + ch] * c + ch] += g[p * c + ch];
    }
  }
}

EMBER_VECTOR_CLONES
void avgpool2d_forward(const Pool2DShape& s, const float* x, float* y) {
  const int64_t c = s.c;
#pragma omp parallel for schedule(static) if (s.n * s.oh * s.ow * c > (1 << 14))
  for (int64_t r = 0; r < s.n * s.oh; ++r) {
    const int64_t img = r / s.oh, oy = r % s.oh;
    const float* xi = x + img * s.h * s.w * c;
    for (int64_t ox = 0; ox < s.ow; ++ox) {
      const Window win = window(s, oy, ox);
      float* yo = y + (r * s.ow + ox) * c;
      std::memset(yo, 0, sizeof(float) * c);
      for (int64_t iy = win.y0; iy < win.y1; ++iy)
        for (int64_t ix = win.x0; ix < win.x1; ++ix) {
          const float* xp = xi + (iy * s.w + ix) * c;
          for (int64_t ch = 0; ch < c; ++ch) yo[ch] += xp[ch];
        }
      const float inv = 1.f / static_cast<float>((win.y1 - win.y0) * (win.x1 - win.x0));
      for (int64_t ch = 0; ch < c; ++ch) yo[ch] *= inv;
    }
  }
}

// Each output spreads dy / count evenly over the inputs of its window.
EMBER_VECTOR_CLONES
void avgpool2d_backward(const Pool2DShape& s, const float* dy, float* dx) {
  const int64_t c = s.c, in = s.h * s.w * c, out = s.oh * s.ow * c;
#pragma omp parallel for schedule(static) if (s.n * in > (1 << 14))
  for (int64_t img = 0; img < s.n; ++img) {
    float* d = dx + img * in;
    std::memset(d, 0, sizeof(float) * in);
    for (int64_t oy = 0; oy < s.oh; ++oy)
      for (int64_t ox = 0; ox < s.ow; ++ox) {
        const Window win = window(s, oy, ox);
        const float inv = 1.f / static_cast<float>((win.y1 - win.y0) * (win.x1 - win.x0));
        const float* g = dy + img * out + (oy * s.ow + ox) * c;
        for (int64_t iy = win.y0; iy < win.y1; ++iy)
          for (int64_t ix = win.x0; ix < win.x1; ++ix) {
            float* dp = d + (iy * s.w + ix) * c;
            for (int64_t ch = 0; ch < c; ++ch) dp[ch] += g[ch] * inv;
          }
      }
  }
}

EMBER_VECTOR_CLONES
void global_maxpool_forward(const float* x, float* y, int32_t* argmax, int64_t n, int64_t hw,
                            int64_t c, const float* mask_ids) {
  if (!mask_ids) {
    maxpool2d_forward(global_shape(n, hw, c), x, y, argmax);
    return;
  }
#pragma omp parallel for schedule(static) if (n * hw * c > (1 << 14))
  for (int64_t img = 0; img < n; ++img) {
    float* yo = y + img * c;
    int32_t* ao = argmax ? argmax + img * c : nullptr;
    std::fill(yo, yo + c, 0.f);
    if (ao) std::fill(ao, ao + c, -1);
    bool any = false;
    for (int64_t p = 0; p < hw; ++p) {
      if (mask_ids[img * hw + p] == 0.f) continue;
      const float* xp = x + (img * hw + p) * c;
      for (int64_t ch = 0; ch < c; ++ch)
        if (!any || beats(xp[ch], yo[ch])) {
          yo[ch] = xp[ch];
          if (ao) ao[ch] = static_cast<int32_t>(p);
        }
      any = true;
    }
  }
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

EMBER_VECTOR_CLONES
void global_avgpool_forward(const float* x, float* y, int64_t n, int64_t hw, int64_t c,
                            const float* mask_ids) {
#pragma omp parallel for schedule(static) if (n * hw * c > (1 << 14))
  for (int64_t img = 0; img < n; ++img) {
    float* yo = y + img * c;
    std::memset(yo, 0, sizeof(float) * c);
    int64_t count = 0;
    for (int64_t p = 0; p < hw; ++p) {
      if (mask_ids && mask_ids[img * hw + p] == 0.f) continue;
      ++count;
      for (int64_t ch = 0; ch < c; ++ch) yo[ch] += x[(img * hw + p) * c + ch];
    }
    const float inv = count ? 1.f / static_cast<float>(count) : 0.f;
    for (int64_t ch = 0; ch < c; ++ch) yo[ch] *= inv;
  }
}

EMBER_VECTOR_CLONES
void global_avgpool_backward(const float* dy, float* dx, int64_t n, int64_t hw, int64_t c,
                             const float* mask_ids) {
#pragma omp parallel for schedule(static) if (n * hw * c > (1 << 14))
  for (int64_t img = 0; img < n; ++img) {
    int64_t count = hw;
    if (mask_ids) {
      count = 0;
      for (int64_t p = 0; p < hw; ++p) count += mask_ids[img * hw + p] != 0.f;
    }
    const float inv = count ? 1.f / static_cast<float>(count) : 0.f;
    for (int64_t p = 0; p < hw; ++p) {
      const bool on = !mask_ids || mask_ids[img * hw + p] != 0.f;
      for (int64_t ch = 0; ch < c; ++ch)
        dx[(img * hw + p) * c + ch] = on ? dy[img * c + ch] * inv : 0.f;
    }
  }
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
