// conv2d.cpp: Conv2D as GEMM over im2col blocks (NHWC), and its direct references.
//
// The batch is cut into blocks of whole images whose im2col matrix fits in about
// 2 MB, so the copy stays in cache and memory does not grow with the batch. The
// block size depends on the layer's shape only, so the weight gradient, summed
// block by block, is the same for any thread count. A 1x1 kernel with stride 1 and
// no padding needs no im2col: the input already is the matrix.
#include "ember/conv2d.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "ember/parallel.h"

#include "ember/buffer.h"
#include "ember/gemm.h"

namespace ember {
namespace {

constexpr int64_t kBlockFloats = int64_t(1) << 19;

int64_t images_per_block(const Conv2DShape& s) {
  return std::max<int64_t>(1, kBlockFloats / (s.oh * s.ow * s.k()));
}

bool is_pointwise(const Conv2DShape& s) {
  return s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.pad_top == 0 &&
         s.pad_left == 0;
}

// One scratch block per calling thread; grows to the largest layer once.
float* scratch(int64_t floats) {
  static thread_local FloatBuffer buf;
  buf.resize(floats);
  return buf.data();
}

// dst[0, len) = src[0, len): a call for long rows, fixed-size moves for short ones
// (a first layer's kernel row is 3 x 3 channels = 9 floats).
inline void copy_short(float* dst, const float* src, int64_t len) {
  if (len >= 32) {
    std::memcpy(dst, src, sizeof(float) * len);
    return;
  }
  int64_t t = 0;
  for (; t + 4 <= len; t += 4) std::memcpy(dst + t, src + t, 4 * sizeof(float));
  for (; t < len; ++t) dst[t] = src[t];
}

// col (ni * oh * ow, kh * kw * c): row (img, oy, ox) holds the input patch under the
// window at that output position, in (i, j, channel) order, zeros where it overhangs.
EMBER_AVX2_CLONE
void im2col(const Conv2DShape& s, const float* x, int64_t img0, int64_t ni, float* col) {
  const int64_t K = s.k(), c = s.c;
#pragma omp parallel for schedule(static) if (ni * s.oh * s.ow * K > (1 << 13))
  for (int64_t r = 0; r < ni * s.oh; ++r) {
    const int64_t img = img0 + r / s.oh, oy = r % s.oh;
    const float* xi = x + img * s.h * s.w * c;
    float* dst = col + r * s.ow * K;
    for (int64_t ox = 0; ox < s.ow; ++ox) {
      const int64_t ix0 = ox * s.sw - s.pad_left;
      // Undilated windows inside the row: each kernel row is kw * c contiguous floats.
      const bool inner = s.dw == 1 && ix0 >= 0 && ix0 + s.kw <= s.w;
      for (int64_t i = 0; i < s.kh; ++i) {
        const int64_t iy = oy * s.sh - s.pad_top + i * s.dh;
        if (inner && iy >= 0 && iy < s.h) {
          const float* src = xi + (iy * s.w + ix0) * c;
          copy_short(dst, src, s.kw * c);
          dst += s.kw * c;
          continue;
        }
        for (int64_t j = 0; j < s.kw; ++j, dst += c) {
          const int64_t ix = ox * s.sw - s.pad_left + j * s.dw;
          if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) {
            std::memset(dst, 0, sizeof(float) * c);
          } else {
            const float* src = xi + (iy * s.w + ix) * c;
            for (int64_t ch = 0; ch < c; ++ch) dst[ch] = src[ch];
          }
        }
      }
    }
  }
}

// The adjoint of im2col, as a gather so each thread owns the dx rows it writes:
// dx[img, iy, ix, :] = sum of the dcol entries that im2col copied from there, in
// (i, j) order.
EMBER_AVX2_CLONE
void col2im(const Conv2DShape& s, const float* dcol, int64_t img0, int64_t ni, float* dx) {
  const int64_t K = s.k(), c = s.c;
#pragma omp parallel for schedule(static) if (ni * s.h * s.w * K > (1 << 15))
  for (int64_t r = 0; r < ni * s.h; ++r) {
    const int64_t img = r / s.h, iy = r % s.h;
    float* drow = dx + ((img0 + img) * s.h + iy) * s.w * c;
    std::memset(drow, 0, sizeof(float) * s.w * c);
    for (int64_t i = 0; i < s.kh; ++i) {
      const int64_t t = iy + s.pad_top - i * s.dh;
      if (t < 0 || t % s.sh) continue;
      const int64_t oy = t / s.sh;
      if (oy >= s.oh) continue;
      const float* prow = dcol + (img * s.oh + oy) * s.ow * K;
      for (int64_t ix = 0; ix < s.w; ++ix) {
        float* d = drow + ix * c;
        for (int64_t j = 0; j < s.kw; ++j) {
          const int64_t u = ix + s.pad_left - j * s.dw;
          if (u < 0 || u % s.sw) continue;
          const int64_t ox = u / s.sw;
          if (ox >= s.ow) continue;
          const float* src = prow + ox * K + (i * s.kw + j) * c;
          for (int64_t ch = 0; ch < c; ++ch) d[ch] += src[ch];
        }
      }
    }
  }
}

// db[j] = sum over rows of dz (rows, f), in fixed blocks of rows whose partial sums
// are added in block order: deterministic, and parallel without strided column walks.
EMBER_AVX2_CLONE
void bias_grad(const float* dz, int64_t rows, int64_t f, float* db) {
  constexpr int64_t kRows = 256;
  const int64_t blocks = (rows + kRows - 1) / kRows;
  static thread_local FloatBuffer partial;
  partial.resize(blocks * f);
  float* p = partial.data();
#pragma omp parallel for schedule(static) if (rows * f > (1 << 15))
  for (int64_t b = 0; b < blocks; ++b) {
    float* pb = p + b * f;
    std::memset(pb, 0, sizeof(float) * f);
    for (int64_t r = b * kRows; r < std::min(rows, (b + 1) * kRows); ++r)
      for (int64_t j = 0; j < f; ++j) pb[j] += dz[r * f + j];
  }
  std::memset(db, 0, sizeof(float) * f);
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t j = 0; j < f; ++j) db[j] += p[b * f + j];
}

void check_positive(const char* what, int64_t v) {
  if (v <= 0)
    throw std::invalid_argument(std::string("Conv2D: ") + what +
                                " must be positive. Received: " + what + "=" +
                                std::to_string(v));
}

}  // namespace

int64_t conv_output_length(int64_t in, int64_t k, int64_t stride, int64_t dilation,
                           bool same) {
  if (same) return (in + stride - 1) / stride;
  const int64_t span = (k - 1) * dilation + 1;
  return in < span ? 0 : (in - span) / stride + 1;
}

int64_t conv_pad_before(int64_t in, int64_t k, int64_t stride, int64_t dilation, bool same) {
  if (!same) return 0;
  const int64_t out = (in + stride - 1) / stride;
  const int64_t total = std::max<int64_t>((out - 1) * stride + (k - 1) * dilation + 1 - in, 0);
  return total / 2;
}

Conv2DShape conv2d_shape(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                         int64_t f, int64_t sh, int64_t sw, int64_t dh, int64_t dw,
                         bool same) {
  check_positive("batch", n);
  check_positive("height", h);
  check_positive("width", w);
  check_positive("channels", c);
  check_positive("filters", f);
  check_positive("kernel height", kh);
  check_positive("kernel width", kw);
  check_positive("stride", std::min(sh, sw));
  check_positive("dilation_rate", std::min(dh, dw));
  if ((sh > 1 || sw > 1) && (dh > 1 || dw > 1))
    throw std::invalid_argument("Conv2D: strides > 1 cannot be combined with "
                                "dilation_rate > 1 (Keras forbids it too)");
  Conv2DShape s;
  s.n = n; s.h = h; s.w = w; s.c = c; s.kh = kh; s.kw = kw; s.f = f;
  s.sh = sh; s.sw = sw; s.dh = dh; s.dw = dw;
  s.oh = conv_output_length(h, kh, sh, dh, same);
  s.ow = conv_output_length(w, kw, sw, dw, same);
  if (s.oh <= 0 || s.ow <= 0)
    throw std::invalid_argument(
        "Conv2D: the input (" + std::to_string(h) + ", " + std::to_string(w) +
        ") is smaller than the dilated kernel (" + std::to_string((kh - 1) * dh + 1) + ", " +
        std::to_string((kw - 1) * dw + 1) + ") under padding='valid'");
  s.pad_top = conv_pad_before(h, kh, sh, dh, same);
  s.pad_left = conv_pad_before(w, kw, sw, dw, same);
  return s;
}

void conv2d_forward(const Conv2DShape& s, const float* x, const float* w, const float* b,
                    float* y, Act act) {
  Epilogue ep;
  ep.bias = b;
  ep.relu = act == Act::Relu;
  const int64_t K = s.k(), P = s.oh * s.ow;
  if (is_pointwise(s)) {
    sgemm(Trans::N, Trans::N, s.n * P, s.f, K, 1.f, x, K, w, s.f, 0.f, y, s.f, &ep);
  } else {
    const int64_t g = images_per_block(s);
    float* col = scratch(std::min(g, s.n) * P * K);
    for (int64_t img0 = 0; img0 < s.n; img0 += g) {
      const int64_t ni = std::min(g, s.n - img0);
      im2col(s, x, img0, ni, col);
      sgemm(Trans::N, Trans::N, ni * P, s.f, K, 1.f, col, K, w, s.f, 0.f, y + img0 * P * s.f,
            s.f, &ep);
    }
  }
  if (act != Act::Linear && act != Act::Relu) act_forward(act, y, y, s.n * P, s.f);
}

// dw = col^T dz, block by block; db = column sums of dz; dcol = dz w^T, then col2im.
void conv2d_backward(const Conv2DShape& s, const float* x, const float* w, const float* dz,
                     float* dx, float* dw, float* db) {
  const int64_t K = s.k(), P = s.oh * s.ow;
  if (db) bias_grad(dz, s.n * P, s.f, db);
  if (is_pointwise(s)) {
    sgemm(Trans::T, Trans::N, K, s.f, s.n * P, 1.f, x, K, dz, s.f, 0.f, dw, s.f);
    if (dx) sgemm(Trans::N, Trans::T, s.n * P, K, s.f, 1.f, dz, s.f, w, s.f, 0.f, dx, K);
    return;
  }
  const int64_t g = images_per_block(s);
  float* col = scratch(std::min(g, s.n) * P * K);
  for (int64_t img0 = 0; img0 < s.n; img0 += g) {
    const int64_t ni = std::min(g, s.n - img0);
    const float* dzb = dz + img0 * P * s.f;
    im2col(s, x, img0, ni, col);
    sgemm(Trans::T, Trans::N, K, s.f, ni * P, 1.f, col, K, dzb, s.f, img0 ? 1.f : 0.f, dw,
          s.f);
    if (dx) {
      sgemm(Trans::N, Trans::T, ni * P, K, s.f, 1.f, dzb, s.f, w, s.f, 0.f, col, K);
      col2im(s, col, img0, ni, dx);
    }
  }
}

template <class T>
void conv2d_forward_ref(const Conv2DShape& s, const T* x, const T* w, const T* b, T* y) {
  for (int64_t img = 0; img < s.n; ++img)
    for (int64_t oy = 0; oy < s.oh; ++oy)
      for (int64_t ox = 0; ox < s.ow; ++ox)
        for (int64_t o = 0; o < s.f; ++o) {
          T acc = b ? b[o] : T(0);
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t j = 0; j < s.kw; ++j) {
              const int64_t iy = oy * s.sh - s.pad_top + i * s.dh;
              const int64_t ix = ox * s.sw - s.pad_left + j * s.dw;
              if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
              for (int64_t ch = 0; ch < s.c; ++ch)
                acc += x[((img * s.h + iy) * s.w + ix) * s.c + ch] *
                       w[((i * s.kw + j) * s.c + ch) * s.f + o];
            }
          y[((img * s.oh + oy) * s.ow + ox) * s.f + o] = acc;
        }
}

template <class T>
void conv2d_backward_ref(const Conv2DShape& s, const T* x, const T* w, const T* dz, T* dx,
                         T* dw, T* db) {
  std::fill(dw, dw + s.k() * s.f, T(0));
  if (db) std::fill(db, db + s.f, T(0));
  if (dx) std::fill(dx, dx + s.n * s.h * s.w * s.c, T(0));
  for (int64_t img = 0; img < s.n; ++img)
    for (int64_t oy = 0; oy < s.oh; ++oy)
      for (int64_t ox = 0; ox < s.ow; ++ox)
        for (int64_t o = 0; o < s.f; ++o) {
          const T g = dz[((img * s.oh + oy) * s.ow + ox) * s.f + o];
          if (db) db[o] += g;
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t j = 0; j < s.kw; ++j) {
              const int64_t iy = oy * s.sh - s.pad_top + i * s.dh;
              const int64_t ix = ox * s.sw - s.pad_left + j * s.dw;
              if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
              for (int64_t ch = 0; ch < s.c; ++ch) {
                const int64_t xi = ((img * s.h + iy) * s.w + ix) * s.c + ch;
                const int64_t wi = ((i * s.kw + j) * s.c + ch) * s.f + o;
                dw[wi] += x[xi] * g;
                if (dx) dx[xi] += w[wi] * g;
              }
            }
        }
}

template void conv2d_forward_ref<float>(const Conv2DShape&, const float*, const float*,
                                        const float*, float*);
template void conv2d_forward_ref<double>(const Conv2DShape&, const double*, const double*,
                                         const double*, double*);
template void conv2d_backward_ref<float>(const Conv2DShape&, const float*, const float*,
                                         const float*, float*, float*, float*);
template void conv2d_backward_ref<double>(const Conv2DShape&, const double*, const double*,
                                          const double*, double*, double*, double*);

}  // namespace ember
