// conv2d.cpp: Conv2D as implicit GEMM (NHWC), and its direct references.
//
// The forward product and the weight gradient read the im2col matrix without forming
// it: the GEMM asks for each patch row as segments of the input (sgemm_lines), so no
// copy nine times the input's size is written and read back. The input gradient goes
// through a patch-shaped matrix (dcol = dz wᵀ, then col2im), in blocks of whole images
// of about 2 MB, so it stays in cache and memory does not grow with the batch. A 1x1
// kernel with stride 1 and no padding is a plain GEMM: the input already is the matrix.
#include "ember/conv2d.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "ember/parallel.h"
#include "ember/vector_isa.h"
#include "vector_math.h"

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

// The im2col matrix of x, never formed: line q = (img, oy, ox) is the input patch
// under the window at that output position, in (i, j, channel) order. Undilated
// along x, each kernel row i is one segment of kw * c contiguous floats; dilated,
// each tap (i, j) is one of c. Segments that overhang the input are built in scratch,
// zeros where there is no input.
struct Patches {
  const Conv2DShape* s;
  const float* x;
};

void find_patches(const void* ctx, int64_t q0, int64_t count, const float** ptrs,
                  float* scratch) {
  const Patches& pt = *static_cast<const Patches*>(ctx);
  const Conv2DShape& s = *pt.s;
  const int64_t c = s.c, P = s.oh * s.ow;
  const bool whole_rows = s.dw == 1;
  const int64_t per_row = whole_rows ? 1 : s.kw;  // segments per kernel row
  const int64_t span = whole_rows ? s.kw : 1;     // taps per segment
  const int64_t nseg = s.kh * per_row, seglen = span * c;
  // The output position (img, oy, ox) of line q0, then stepped line by line.
  int64_t img = q0 / P, oy = q0 % P / s.ow, ox = q0 % P % s.ow;
  const int64_t ylast = (s.kh - 1) * s.dh, xspan = (s.kw - 1) * s.dw + 1;
  // Zeros for every segment on a row of padding (never written after its allocation).
  static thread_local FloatBuffer zeros;
  if (zeros.size() < seglen) zeros.resize(seglen);
  for (int64_t q = 0; q < count; ++q) {
    const float* xi = pt.x + img * s.h * s.w * c;
    const int64_t iy0 = oy * s.sh - s.pad_top, ix0 = ox * s.sw - s.pad_left;
    if (iy0 >= 0 && iy0 + ylast < s.h && ix0 >= 0 && ix0 + xspan <= s.w) {
      // The whole window is inside: every segment is in x, at a fixed offset.
      const float* base = xi + (iy0 * s.w + ix0) * c;
      const float** p = ptrs + q * nseg;
      for (int64_t i = 0; i < s.kh; ++i, base += s.dh * s.w * c)
        for (int64_t u = 0; u < per_row; ++u) *p++ = base + u * s.dw * c;
    } else {
      for (int64_t i = 0; i < s.kh; ++i) {
        const int64_t iy = oy * s.sh - s.pad_top + i * s.dh;
        const bool row_in = iy >= 0 && iy < s.h;
        for (int64_t u = 0; u < per_row; ++u) {
          const int64_t t = q * nseg + i * per_row + u;
          const int64_t ix = ox * s.sw - s.pad_left + u * s.dw;  // the segment's first column
          if (row_in && ix >= 0 && ix + span <= s.w) {
            ptrs[t] = xi + (iy * s.w + ix) * c;
            continue;
          }
          if (!row_in) {
            ptrs[t] = zeros.data();
            continue;
          }
          float* d = scratch + t * seglen;
          ptrs[t] = d;
          for (int64_t j = 0; j < span; ++j, d += c) {
            if (row_in && ix + j >= 0 && ix + j < s.w)
              std::memcpy(d, xi + (iy * s.w + ix + j) * c, sizeof(float) * c);
            else
              std::memset(d, 0, sizeof(float) * c);
          }
        }
      }
    }
    if (++ox == s.ow) {
      ox = 0;
      if (++oy == s.oh) {
        oy = 0;
        ++img;
      }
    }
  }
}

Lines patch_lines(const Patches& pt) {
  Lines L;
  L.nseg = pt.s->dw == 1 ? pt.s->kh : pt.s->kh * pt.s->kw;
  L.seglen = pt.s->dw == 1 ? pt.s->kw * pt.s->c : pt.s->c;
  L.find = find_patches;
  L.ctx = &pt;
  return L;
}

#define EMBER_VECTOR_LOOPS "conv2d_loops.inc"
#include "ember/vector_variants.inc"

void col2im(const Conv2DShape& s, const float* dcol, int64_t img0, int64_t ni, float* dx) {
  EMBER_VECTOR_CALL(col2im, s, dcol, img0, ni, dx);
}

}  // namespace

void bias_grad(const float* dz, int64_t rows, int64_t f, float* db) {
  EMBER_VECTOR_CALL(bias_grad, dz, rows, f, db);
}

namespace {

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
                    float* y, Act act, const float* scale, const float* shift) {
  Epilogue ep;
  ep.bias = b;
  ep.scale = scale;
  ep.shift = shift;
  ep.relu = act == Act::Relu;
  const int64_t K = s.k(), P = s.oh * s.ow;
  if (is_pointwise(s)) {
    sgemm(Trans::N, Trans::N, s.n * P, s.f, K, 1.f, x, K, w, s.f, 0.f, y, s.f, &ep);
  } else {
    const Patches pt{&s, x};
    sgemm_lines(Trans::N, patch_lines(pt), s.n * P, s.f, K, w, s.f, 0.f, y, s.f, &ep);
  }
  if (act != Act::Linear && act != Act::Relu) act_forward(act, y, y, s.n * P, s.f);
}

namespace {

// dx of a stride-1 convolution is itself a convolution, of dz: dx[iy, ix, ch] = the sum
// over (i, j, o) of dz[iy + pad_top - i dh, ix + pad_left - j dw, o] w[i, j, ch, o], that
// is dz padded by (kh - 1) dh - pad_top above and (kw - 1) dw - pad_left on the left,
// under the kernel flipped in both axes with its channels and filters swapped. One
// implicit GEMM then, with no patch-gradient matrix written and read back by col2im.
// Where padding='valid' makes dx much larger than dz, the GEMM would mostly multiply
// that padding: the col2im route does fewer products there.
bool dx_as_convolution(const Conv2DShape& s) {
  return s.sh == 1 && s.sw == 1 && s.pad_top <= (s.kh - 1) * s.dh &&
         s.pad_left <= (s.kw - 1) * s.dw && 4 * s.h * s.w <= 5 * s.oh * s.ow;
}

void conv2d_backward_data(const Conv2DShape& s, const float* w, const float* dz, float* dx) {
  Conv2DShape t;
  t.n = s.n; t.h = s.oh; t.w = s.ow; t.c = s.f;
  t.kh = s.kh; t.kw = s.kw; t.f = s.c;
  t.dh = s.dh; t.dw = s.dw;
  t.pad_top = (s.kh - 1) * s.dh - s.pad_top;
  t.pad_left = (s.kw - 1) * s.dw - s.pad_left;
  t.oh = s.h; t.ow = s.w;
  static thread_local FloatBuffer flipped;
  flipped.resize(s.kh * s.kw * s.f * s.c);
  float* wt = flipped.data();  // (kh, kw, f, c)
  for (int64_t i = 0; i < s.kh; ++i)
    for (int64_t j = 0; j < s.kw; ++j) {
      const float* src = w + ((s.kh - 1 - i) * s.kw + (s.kw - 1 - j)) * s.c * s.f;
      float* dst = wt + (i * s.kw + j) * s.f * s.c;
      for (int64_t o = 0; o < s.f; ++o)
        for (int64_t ch = 0; ch < s.c; ++ch) dst[o * s.c + ch] = src[ch * s.f + o];
    }
  const Patches pt{&t, dz};
  sgemm_lines(Trans::N, patch_lines(pt), s.n * s.h * s.w, s.c, t.k(), wt, s.c, 0.f, dx, s.c);
}

}  // namespace

// dw = colᵀ dz, one product over the batch's implicit patch matrix; db = column sums
// of dz; dx: a convolution of dz (above) at stride 1, else dcol = dz wᵀ block by block
// of images, then col2im.
void conv2d_backward(const Conv2DShape& s, const float* x, const float* w, const float* dz,
                     float* dx, float* dw, float* db) {
  const int64_t K = s.k(), P = s.oh * s.ow;
  if (db) bias_grad(dz, s.n * P, s.f, db);
  if (is_pointwise(s)) {
    if (dw) sgemm(Trans::T, Trans::N, K, s.f, s.n * P, 1.f, x, K, dz, s.f, 0.f, dw, s.f);
    if (dx) sgemm(Trans::N, Trans::T, s.n * P, K, s.f, 1.f, dz, s.f, w, s.f, 0.f, dx, K);
    return;
  }
  const Patches pt{&s, x};
  if (dw) sgemm_lines(Trans::T, patch_lines(pt), K, s.f, s.n * P, dz, s.f, 0.f, dw, s.f);
  if (!dx) return;
  if (dx_as_convolution(s)) return conv2d_backward_data(s, w, dz, dx);
  const int64_t g = images_per_block(s);
  float* col = scratch(std::min(g, s.n) * P * K);
  for (int64_t img0 = 0; img0 < s.n; img0 += g) {
    const int64_t ni = std::min(g, s.n - img0);
    sgemm(Trans::N, Trans::T, ni * P, K, s.f, 1.f, dz + img0 * P * s.f, s.f, w, s.f, 0.f, col,
          K);
    col2im(s, col, img0, ni, dx);
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

namespace ember {

namespace {
constexpr int64_t kDepthwiseBlockRows = 16;  // output rows per partial weight gradient
}

void depthwise_forward(const Conv2DShape& s, const float* x, const float* w, float* y) {
  const int64_t dm = s.f / s.c;
#pragma omp parallel for schedule(static) if (s.n * s.oh * s.ow * s.f * s.kh * s.kw > (1 << 15))
  for (int64_t r = 0; r < s.n * s.oh; ++r) {
    const int64_t b = r / s.oh, oy = r % s.oh;
    float* yr = y + r * s.ow * s.f;
    std::fill(yr, yr + s.ow * s.f, 0.f);
    for (int64_t a = 0; a < s.kh; ++a) {
      const int64_t iy = oy * s.sh - s.pad_top + a * s.dh;
      if (iy < 0 || iy >= s.h) continue;
      for (int64_t ox = 0; ox < s.ow; ++ox)
        for (int64_t e = 0; e < s.kw; ++e) {
          const int64_t ix = ox * s.sw - s.pad_left + e * s.dw;
          if (ix < 0 || ix >= s.w) continue;
          const float* xp = x + ((b * s.h + iy) * s.w + ix) * s.c;
          const float* wp = w + (a * s.kw + e) * s.c * dm;
          float* yp = yr + ox * s.f;
          for (int64_t j = 0; j < s.c; ++j)
            for (int64_t m = 0; m < dm; ++m) yp[j * dm + m] += xp[j] * wp[j * dm + m];
        }
    }
  }
}

int64_t depthwise_scratch(const Conv2DShape& s) {
  const int64_t rows = s.n * s.oh, blocks = (rows + kDepthwiseBlockRows - 1) / kDepthwiseBlockRows;
  return blocks * s.kh * s.kw * s.f;
}

void depthwise_backward(const Conv2DShape& s, const float* x, const float* w, const float* dy,
                        float* dx, float* dw, float* scratch) {
  const int64_t dm = s.f / s.c, nw = s.kh * s.kw * s.f;
  if (dw) {
    const int64_t rows = s.n * s.oh;
    const int64_t blocks = (rows + kDepthwiseBlockRows - 1) / kDepthwiseBlockRows;
#pragma omp parallel for schedule(static) if (rows * s.ow * nw > (1 << 15))
    for (int64_t blk = 0; blk < blocks; ++blk) {
      float* p = scratch + blk * nw;
      std::fill(p, p + nw, 0.f);
      for (int64_t r = blk * kDepthwiseBlockRows;
           r < std::min(rows, (blk + 1) * kDepthwiseBlockRows); ++r) {
        const int64_t b = r / s.oh, oy = r % s.oh;
        for (int64_t a = 0; a < s.kh; ++a) {
          const int64_t iy = oy * s.sh - s.pad_top + a * s.dh;
          if (iy < 0 || iy >= s.h) continue;
          for (int64_t ox = 0; ox < s.ow; ++ox)
            for (int64_t e = 0; e < s.kw; ++e) {
              const int64_t ix = ox * s.sw - s.pad_left + e * s.dw;
              if (ix < 0 || ix >= s.w) continue;
              const float* xp = x + ((b * s.h + iy) * s.w + ix) * s.c;
              const float* dp = dy + (r * s.ow + ox) * s.f;
              float* pw = p + (a * s.kw + e) * s.f;
              for (int64_t j = 0; j < s.c; ++j)
                for (int64_t m = 0; m < dm; ++m) pw[j * dm + m] += xp[j] * dp[j * dm + m];
            }
        }
      }
    }
    std::fill(dw, dw + nw, 0.f);
    for (int64_t blk = 0; blk < blocks; ++blk)
      for (int64_t k = 0; k < nw; ++k) dw[k] += scratch[blk * nw + k];
  }
  if (!dx) return;
  // dx[b, iy, ix, j] = sum over the (a, e) with oy = (iy + pad - a dh) / sh whole and in
  // range (the same for ox) of dy[b, oy, ox, j dm + m] w[a, e, j, m].
#pragma omp parallel for schedule(static) if (s.n * s.h * s.w * s.f * s.kh * s.kw > (1 << 15))
  for (int64_t r = 0; r < s.n * s.h; ++r) {
    const int64_t b = r / s.h, iy = r % s.h;
    float* dr = dx + r * s.w * s.c;
    std::fill(dr, dr + s.w * s.c, 0.f);
    for (int64_t a = 0; a < s.kh; ++a) {
      const int64_t ty = iy + s.pad_top - a * s.dh;
      if (ty < 0 || ty % s.sh) continue;
      const int64_t oy = ty / s.sh;
      if (oy >= s.oh) continue;
      for (int64_t ix = 0; ix < s.w; ++ix)
        for (int64_t e = 0; e < s.kw; ++e) {
          const int64_t tx = ix + s.pad_left - e * s.dw;
          if (tx < 0 || tx % s.sw) continue;
          const int64_t ox = tx / s.sw;
          if (ox >= s.ow) continue;
          const float* dp = dy + ((b * s.oh + oy) * s.ow + ox) * s.f;
          const float* wp = w + (a * s.kw + e) * s.f;
          float* d = dr + ix * s.c;
          for (int64_t j = 0; j < s.c; ++j)
            for (int64_t m = 0; m < dm; ++m) d[j] += dp[j * dm + m] * wp[j * dm + m];
        }
    }
  }
}

}  // namespace ember
