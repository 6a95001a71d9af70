// resample.cpp: nearest-neighbour upsampling, zero padding and cropping.
#include "ember/resample.h"

#include <algorithm>
#include <cstring>

namespace ember {

void upsample_nearest_forward(const float* x, float* y, int64_t n, int64_t h, int64_t w,
                              int64_t c, int64_t sh, int64_t sw) {
  const int64_t oh = h * sh, ow = w * sw;
#pragma omp parallel for schedule(static) if (n * oh * ow * c > (1 << 15))
  for (int64_t r = 0; r < n * oh; ++r) {
    const int64_t b = r / oh, i = r % oh;
    const float* src = x + (b * h + i / sh) * w * c;
    float* dst = y + r * ow * c;
    for (int64_t j = 0; j < ow; ++j) std::memcpy(dst + j * c, src + (j / sw) * c, sizeof(float) * c);
  }
}

void upsample_nearest_backward(const float* dy, float* dx, int64_t n, int64_t h, int64_t w,
                               int64_t c, int64_t sh, int64_t sw) {
  const int64_t ow = w * sw;
#pragma omp parallel for schedule(static) if (n * h * w * c * sh * sw > (1 << 15))
  for (int64_t r = 0; r < n * h; ++r) {
    const int64_t b = r / h, i = r % h;
    float* d = dx + r * w * c;
    std::fill(d, d + w * c, 0.f);
    for (int64_t a = 0; a < sh; ++a) {
      const float* src = dy + ((b * h + i) * sh + a) * ow * c;
      for (int64_t j = 0; j < w; ++j)
        for (int64_t e = 0; e < sw; ++e)
          for (int64_t k = 0; k < c; ++k) d[j * c + k] += src[(j * sw + e) * c + k];
    }
  }
}

void shift_window(const float* src, int64_t sh, int64_t sw, float* dst, int64_t dh,
                  int64_t dw, int64_t n, int64_t c, int64_t oy, int64_t ox) {
  // Destination columns [j0, j1) come from source columns [j0 - ox, j1 - ox).
  const int64_t j0 = std::max<int64_t>(0, ox), j1 = std::min(dw, sw + ox);
#pragma omp parallel for schedule(static) if (n * dh * dw * c > (1 << 15))
  for (int64_t r = 0; r < n * dh; ++r) {
    const int64_t b = r / dh, i = r % dh, si = i - oy;
    float* d = dst + r * dw * c;
    if (si < 0 || si >= sh || j1 <= j0) {
      std::fill(d, d + dw * c, 0.f);
      continue;
    }
    std::fill(d, d + j0 * c, 0.f);
    std::memcpy(d + j0 * c, src + ((b * sh + si) * sw + (j0 - ox)) * c,
                sizeof(float) * (j1 - j0) * c);
    std::fill(d + j1 * c, d + dw * c, 0.f);
  }
}

}  // namespace ember
