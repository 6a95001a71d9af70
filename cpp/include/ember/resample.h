// resample.h: nearest-neighbour upsampling, zero padding and cropping of NHWC images,
// forward and backward.
#pragma once
#include <cstdint>

namespace ember {

// x (n, h, w, c) -> y (n, h sh, w sw, c): each pixel repeated sh x sw times.
void upsample_nearest_forward(const float* x, float* y, int64_t n, int64_t h, int64_t w,
                              int64_t c, int64_t sh, int64_t sw);
// dx (n, h, w, c) = the sum of dy over each pixel's sh x sw copies (each dx element is
// summed by one thread, in a fixed order).
void upsample_nearest_backward(const float* dy, float* dx, int64_t n, int64_t h, int64_t w,
                               int64_t c, int64_t sh, int64_t sw);

// dst (n, dh, dw, c)[i, j] = src (n, sh, sw, c)[i - oy, j - ox] where that pixel exists,
// else 0: zero padding (oy, ox >= 0: the top and left padding) and cropping (oy, ox <= 0:
// minus the top and left crop); each is the other's backward.
void shift_window(const float* src, int64_t sh, int64_t sw, float* dst, int64_t dh,
                  int64_t dw, int64_t n, int64_t c, int64_t oy, int64_t ox);

}  // namespace ember
