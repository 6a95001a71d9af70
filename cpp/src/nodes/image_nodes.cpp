// image_nodes.cpp: resizing, Keras's random image layers and RandomCrop.
#include <algorithm>
#include <cmath>
#include <cstring>
#include "ember/nodes.h"
#include "ember/random.h"

namespace ember {

namespace {

constexpr int64_t kParallelMin = 1 << 15;

// Keras's smart_resize window: the largest centred (ch, cw) of the aspect ratio oh:ow.
void aspect_window(int64_t h, int64_t w, int64_t oh, int64_t ow, int64_t* top, int64_t* left,
                   int64_t* ch, int64_t* cw) {
  *ch = std::max<int64_t>(1, std::min(h, static_cast<int64_t>(double(w) * oh / ow)));
  *cw = std::max<int64_t>(1, std::min(w, static_cast<int64_t>(double(h) * ow / oh)));
  *top = (h - *ch) / 2;
  *left = (w - *cw) / 2;
}

// An index outside [0, n) brought inside as the fill mode says; -1 for Constant.
inline int64_t fix_index(int64_t i, int64_t n, FillMode mode) {
  if (i >= 0 && i < n) return i;
  switch (mode) {
    case FillMode::Reflect: {  // (d c b a | a b c d | d c b a)
      const int64_t p = 2 * n;
      int64_t k = i % p;
      if (k < 0) k += p;
      return k < n ? k : p - 1 - k;
    }
    case FillMode::Wrap: {
      int64_t k = i % n;
      return k < 0 ? k + n : k;
    }
    case FillMode::Nearest: return i < 0 ? 0 : n - 1;
    default: return -1;
  }
}

// The output-to-input map of one image: x_in = m[0] x + m[1] y + m[2],
// y_in = m[3] x + m[4] y + m[5] (Keras's transform rows a and b), from the draws u.
void affine_map(const AugmentSpec& s, const float* u, float* m) {
  const double H = double(s.h), W = double(s.w);
  double a0 = 1, a1 = 0, a2 = 0, b0 = 0, b1 = 1, b2 = 0;
  auto draw = [](double lo, double hi, float v) { return lo + (hi - lo) * double(v); };
  switch (s.kind) {
    case AugmentKind::Rotation: {
      const double angle = draw(s.a0, s.a1, u[0]) * 2.0 * M_PI;
      const double cx = 0.5 * (W - 1), cy = 0.5 * (H - 1);
      a0 = std::cos(angle);
      a1 = -std::sin(angle);
      b0 = std::sin(angle);
      b1 = std::cos(angle);
      a2 = cx - cx * a0 - cy * a1;
      b2 = cy - cx * b0 - cy * b1;
      break;
    }
    case AugmentKind::Zoom: {
      const double zy = 1.0 + draw(s.a0, s.a1, u[0]);
      const double zx = s.b_same ? zy : 1.0 + draw(s.b0, s.b1, u[1]);
      a0 = zx;
      a2 = (W - 1) / 2 * (1 - zx);
      b1 = zy;
      b2 = (H - 1) / 2 * (1 - zy);
      break;
    }
    default: {  // Translation
      b2 = -draw(s.a0, s.a1, u[0]) * H;
      a2 = -draw(s.b0, s.b1, u[1]) * W;
      break;
    }
  }
  const double v[6] = {a0, a1, a2, b0, b1, b2};
  for (int k = 0; k < 6; ++k) m[k] = static_cast<float>(v[k]);
}

// Calls f(output pixel, input pixel or -1 (the fill value), weight) for each tap of
// each output pixel of one image under the map m.
template <class F>
void affine_taps(const AugmentSpec& s, const float* m, F f) {
  for (int64_t oy = 0; oy < s.h; ++oy) {
    for (int64_t ox = 0; ox < s.w; ++ox) {
      const float fx = m[0] * ox + m[1] * oy + m[2];
      const float fy = m[3] * ox + m[4] * oy + m[5];
      const int64_t o = oy * s.w + ox;
      if (s.nearest) {  // rounded half away from zero, as JAX's map_coordinates
        const int64_t iy = fix_index(static_cast<int64_t>(std::round(fy)), s.h, s.fill);
        const int64_t ix = fix_index(static_cast<int64_t>(std::round(fx)), s.w, s.fill);
        f(o, iy < 0 || ix < 0 ? -1 : iy * s.w + ix, 1.f);
        continue;
      }
      const float y0 = std::floor(fy), x0 = std::floor(fx);
      const float wy = fy - y0, wx = fx - x0;
      for (int dy = 0; dy < 2; ++dy) {
        const int64_t iy = fix_index(static_cast<int64_t>(y0) + dy, s.h, s.fill);
        const float wyk = dy ? wy : 1.f - wy;
        for (int dx = 0; dx < 2; ++dx) {
          const int64_t ix = fix_index(static_cast<int64_t>(x0) + dx, s.w, s.fill);
          f(o, iy < 0 || ix < 0 ? -1 : iy * s.w + ix, wyk * (dx ? wx : 1.f - wx));
        }
      }
    }
  }
}

}  // namespace

ResizeNode::ResizeNode(int64_t h, int64_t w, int64_t c, int64_t oh, int64_t ow, int64_t top,
                       int64_t left, int64_t wh, int64_t ww, bool nearest)
    : h_(h), w_(w), c_(c), oh_(oh), ow_(ow) {
  auto taps = [nearest](int64_t start, int64_t len, int64_t out) {
    std::vector<Tap> t(static_cast<size_t>(out));
    const double scale = double(len) / double(out);
    for (int64_t i = 0; i < out; ++i) {
      const double src = (double(i) + 0.5) * scale - 0.5;
      if (nearest) {
        const int64_t k = std::min(len - 1, static_cast<int64_t>(std::floor(src + 0.5)));
        t[i] = Tap{start + k, start + k, 0.f};
        continue;
      }
      const double lo = std::floor(src);
      const int64_t a = std::clamp<int64_t>(static_cast<int64_t>(lo), 0, len - 1);
      const int64_t b = std::clamp<int64_t>(static_cast<int64_t>(lo) + 1, 0, len - 1);
      t[i] = Tap{start + a, start + b, static_cast<float>(src - lo)};
    }
    return t;
  };
  rows_ = taps(top, wh, oh);
  cols_ = taps(left, ww, ow);
}

ResizeNode ResizeNode::of_image(int64_t h, int64_t w, int64_t c, int64_t oh, int64_t ow,
                                bool nearest, bool crop_to_aspect) {
  int64_t top = 0, left = 0, wh = h, ww = w;
  if (crop_to_aspect) aspect_window(h, w, oh, ow, &top, &left, &wh, &ww);
  return ResizeNode(h, w, c, oh, ow, top, left, wh, ww, nearest);
}

template <class F>
void ResizeNode::each_pixel(F f) const {
  for (int64_t oy = 0; oy < oh_; ++oy) {
    const Tap& r = rows_[oy];
    for (int64_t ox = 0; ox < ow_; ++ox) {
      const Tap& q = cols_[ox];
      const int64_t at[4] = {(r.lo * w_ + q.lo) * c_, (r.lo * w_ + q.hi) * c_,
                             (r.hi * w_ + q.lo) * c_, (r.hi * w_ + q.hi) * c_};
      const float wt[4] = {(1.f - r.frac) * (1.f - q.frac), (1.f - r.frac) * q.frac,
                           r.frac * (1.f - q.frac), r.frac * q.frac};
      f((oy * ow_ + ox) * c_, at, wt);
    }
  }
}

void ResizeNode::resize_one(const float* x, float* y) const {
  each_pixel([&](int64_t o, const int64_t* at, const float* wt) {
    for (int64_t ch = 0; ch < c_; ++ch)
      y[o + ch] = wt[0] * x[at[0] + ch] + wt[1] * x[at[1] + ch] + wt[2] * x[at[2] + ch] +
                  wt[3] * x[at[3] + ch];
  });
}

void ResizeNode::adjoint_one(const float* dy, float* dx) const {
  std::memset(dx, 0, sizeof(float) * h_ * w_ * c_);
  each_pixel([&](int64_t o, const int64_t* at, const float* wt) {
    for (int k = 0; k < 4; ++k)
      for (int64_t ch = 0; ch < c_; ++ch) dx[at[k] + ch] += wt[k] * dy[o + ch];
  });
}

void ResizeNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  const int64_t in = h_ * w_ * c_, out = oh_ * ow_ * c_;
#pragma omp parallel for schedule(static) if (n * out > kParallelMin)
  for (int64_t b = 0; b < n; ++b) resize_one(x[0] + b * in, y + b * out);
}

void ResizeNode::backward(const StepCtx&, const float* const*, const float*, float* dy,
                          float* const* dx, int64_t n, bool) {
  if (!dx[0]) return;
  const int64_t in = h_ * w_ * c_, out = oh_ * ow_ * c_;
#pragma omp parallel for schedule(static) if (n * out > kParallelMin)
  for (int64_t b = 0; b < n; ++b) adjoint_one(dy + b * out, dx[0] + b * in);
}

const char* AugmentNode::kind() const {
  switch (s_.kind) {
    case AugmentKind::Flip: return "RandomFlip";
    case AugmentKind::Rotation: return "RandomRotation";
    case AugmentKind::Zoom: return "RandomZoom";
    case AugmentKind::Translation: return "RandomTranslation";
    default: return "RandomContrast";
  }
}

int64_t AugmentNode::saved_per_sample() const {
  return s_.kind == AugmentKind::Flip || s_.kind == AugmentKind::Contrast ? 1 : 6;
}

void AugmentNode::forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) {
  const int64_t H = s_.h, W = s_.w, C = s_.c, per = H * W * C;
  active_ = ctx.training && saved != nullptr;
  if (!active_) {
    std::memcpy(y, x[0], sizeof(float) * n * per);
    return;
  }
  const int64_t S = saved_per_sample();
#pragma omp parallel for schedule(static) if (n * per > kParallelMin)
  for (int64_t b = 0; b < n; ++b) {
    const float* xi = x[0] + b * per;
    float* yi = y + b * per;
    float* sv = saved + b * S;
    float u[2] = {philox_uniform(s_.seed, ctx.step, 2 * b),
                  philox_uniform(s_.seed, ctx.step, 2 * b + 1)};
    if (s_.kind == AugmentKind::Flip) {
      const bool flip = u[0] <= 0.5f;
      sv[0] = flip ? 1.f : 0.f;
      const bool fy = flip && s_.vertical, fx = flip && s_.horizontal;
      for (int64_t i = 0; i < H; ++i)
        for (int64_t j = 0; j < W; ++j)
          std::memcpy(yi + (i * W + j) * C,
                      xi + ((fy ? H - 1 - i : i) * W + (fx ? W - 1 - j : j)) * C,
                      sizeof(float) * C);
    } else if (s_.kind == AugmentKind::Contrast) {
      const float f = s_.a0 + (s_.a1 - s_.a0) * u[0];
      sv[0] = f;
      for (int64_t ch = 0; ch < C; ++ch) {
        float sum = 0.f;
        for (int64_t p = 0; p < H * W; ++p) sum += xi[p * C + ch];
        const float mean = sum / static_cast<float>(H * W);
        for (int64_t p = 0; p < H * W; ++p) {
          const float v = (xi[p * C + ch] - mean) * f + mean;
          yi[p * C + ch] = std::min(std::max(v, s_.lo), s_.hi);
        }
      }
    } else {
      affine_map(s_, u, sv);
      std::memset(yi, 0, sizeof(float) * per);
      affine_taps(s_, sv, [&](int64_t o, int64_t i, float w) {
        float* dst = yi + o * C;
        if (i < 0) {
          for (int64_t ch = 0; ch < C; ++ch) dst[ch] += w * s_.fill_value;
        } else {
          const float* src = xi + i * C;
          for (int64_t ch = 0; ch < C; ++ch) dst[ch] += w * src[ch];
        }
      });
    }
  }
}

void AugmentNode::backward(const StepCtx&, const float* const*, const float* y, float* dy,
                           float* const* dx, int64_t n, bool) {
  if (!dx[0]) return;
  const int64_t H = s_.h, W = s_.w, C = s_.c, per = H * W * C;
  if (!active_) {
    std::memcpy(dx[0], dy, sizeof(float) * n * per);
    return;
  }
  const int64_t S = saved_per_sample();
#pragma omp parallel for schedule(static) if (n * per > kParallelMin)
  for (int64_t b = 0; b < n; ++b) {
    const float* g = dy + b * per;
    float* d = dx[0] + b * per;
    const float* sv = saved + b * S;
    if (s_.kind == AugmentKind::Flip) {
      const bool flip = sv[0] != 0.f;
      const bool fy = flip && s_.vertical, fx = flip && s_.horizontal;
      for (int64_t i = 0; i < H; ++i)
        for (int64_t j = 0; j < W; ++j)
          std::memcpy(d + ((fy ? H - 1 - i : i) * W + (fx ? W - 1 - j : j)) * C,
                      g + (i * W + j) * C, sizeof(float) * C);
    } else if (s_.kind == AugmentKind::Contrast) {
      // y = (x - mean) f + mean where not clipped: dx = f g + (1 - f) mean(g).
      const float f = sv[0];
      const float* yi = y + b * per;
      for (int64_t ch = 0; ch < C; ++ch) {
        float sum = 0.f;
        for (int64_t p = 0; p < H * W; ++p) {
          const float v = yi[p * C + ch];
          const float gv = v > s_.lo && v < s_.hi ? g[p * C + ch] : 0.f;
          d[p * C + ch] = gv;
          sum += gv;
        }
        const float shift = (1.f - f) * sum / static_cast<float>(H * W);
        for (int64_t p = 0; p < H * W; ++p) d[p * C + ch] = f * d[p * C + ch] + shift;
      }
    } else {
      std::memset(d, 0, sizeof(float) * per);
      affine_taps(s_, sv, [&](int64_t o, int64_t i, float w) {
        if (i < 0) return;
        const float* src = g + o * C;
        float* dst = d + i * C;
        for (int64_t ch = 0; ch < C; ++ch) dst[ch] += w * src[ch];
      });
    }
  }
}

RandomCropNode::RandomCropNode(int64_t h, int64_t w, int64_t c, int64_t oh, int64_t ow,
                               uint64_t seed)
    : h_(h), w_(w), c_(c), oh_(oh), ow_(ow), seed_(seed),
      resize_([&] {
        int64_t top, left, ch, cw;
        aspect_window(h, w, oh, ow, &top, &left, &ch, &cw);
        return ResizeNode(h, w, c, oh, ow, top, left, ch, cw, false);
      }()) {}

void RandomCropNode::forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) {
  const int64_t in = h_ * w_ * c_, out = oh_ * ow_ * c_;
  cropped_ = ctx.training && saved != nullptr && h_ > oh_ && w_ > ow_;
#pragma omp parallel for schedule(static) if (n * out > kParallelMin)
  for (int64_t b = 0; b < n; ++b) {
    const float* xi = x[0] + b * in;
    float* yi = y + b * out;
    if (!cropped_) {
      resize_.resize_one(xi, yi);
      continue;
    }
    const int64_t top = std::min(h_ - oh_, static_cast<int64_t>(
        philox_uniform(seed_, ctx.step, 2 * b) * float(h_ - oh_ + 1)));
    const int64_t left = std::min(w_ - ow_, static_cast<int64_t>(
        philox_uniform(seed_, ctx.step, 2 * b + 1) * float(w_ - ow_ + 1)));
    saved[b * 2] = static_cast<float>(top);
    saved[b * 2 + 1] = static_cast<float>(left);
    for (int64_t i = 0; i < oh_; ++i)
      std::memcpy(yi + i * ow_ * c_, xi + ((top + i) * w_ + left) * c_,
                  sizeof(float) * ow_ * c_);
  }
}

void RandomCropNode::backward(const StepCtx&, const float* const*, const float*, float* dy,
                              float* const* dx, int64_t n, bool) {
  if (!dx[0]) return;
  const int64_t in = h_ * w_ * c_, out = oh_ * ow_ * c_;
#pragma omp parallel for schedule(static) if (n * out > kParallelMin)
  for (int64_t b = 0; b < n; ++b) {
    const float* g = dy + b * out;
    float* d = dx[0] + b * in;
    if (!cropped_) {
      resize_.adjoint_one(g, d);
      continue;
    }
    const int64_t top = static_cast<int64_t>(saved[b * 2]);
    const int64_t left = static_cast<int64_t>(saved[b * 2 + 1]);
    std::memset(d, 0, sizeof(float) * in);
    for (int64_t i = 0; i < oh_; ++i)
      std::memcpy(d + ((top + i) * w_ + left) * c_, g + i * ow_ * c_, sizeof(float) * ow_ * c_);
  }
}

}  // namespace ember
