// conv2d.h: 2-D convolution over NHWC images with Keras's (kh, kw, in, out) kernels,
// forward and backward.
#pragma once
#include <cstdint>
#include "ember/activations.h"

namespace ember {

// Every size of one convolution. Padding follows Keras (and TensorFlow): 'valid'
// has none; 'same' gives out = ceil(in / stride) and pads
// max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0) in total, the smaller
// half before (top/left), the larger after.
struct Conv2DShape {
  int64_t n = 0, h = 0, w = 0, c = 0;  // input (n, h, w, c)
  int64_t kh = 0, kw = 0, f = 0;       // kernel (kh, kw, c, f)
  int64_t sh = 1, sw = 1, dh = 1, dw = 1;
  int64_t pad_top = 0, pad_left = 0;
  int64_t oh = 0, ow = 0;              // output (n, oh, ow, f)
  int64_t k() const { return kh * kw * c; }  // one im2col row
};

// Output size along one axis, Keras's arithmetic; 0 when the window does not fit.
int64_t conv_output_length(int64_t in, int64_t k, int64_t stride, int64_t dilation,
                           bool same);
// Padding before the data along one axis ('same' only; 0 for 'valid').
int64_t conv_pad_before(int64_t in, int64_t k, int64_t stride, int64_t dilation, bool same);

// Validates and fills every field; throws std::invalid_argument naming the bad value
// (non-positive sizes, a window larger than the padded input).
Conv2DShape conv2d_shape(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                         int64_t f, int64_t sh, int64_t sw, int64_t dh, int64_t dw, bool same);

// x (n, h, w, c), w (kh, kw, c, f), b (f) or null, y (n, oh, ow, f):
// y = act((conv(x, w) + b) * scale + shift), scale and shift (f) or null (a folded
// BatchNormalization). Bias, scale, shift and relu are fused into the GEMM.
void conv2d_forward(const Conv2DShape& s, const float* x, const float* w, const float* b,
                    float* y, Act act, const float* scale = nullptr,
                    const float* shift = nullptr);

// dz (n, oh, ow, f) is the gradient at the pre-activation. Writes dw (kh, kw, c, f),
// db (f) and dx (n, h, w, c), each unless null (a frozen variable, the first layer).
void conv2d_backward(const Conv2DShape& s, const float* x, const float* w, const float* dz,
                     float* dx, float* dw, float* db);

// Depthwise convolution (Keras's DepthwiseConv2D): each input channel j has its own
// dm filters; s describes the geometry with s.c = input channels and s.f = c * dm;
// w (kh, kw, c, dm); y (n, oh, ow, c * dm), channel j * dm + m.
void depthwise_forward(const Conv2DShape& s, const float* x, const float* w, float* y);
// dx (n, h, w, c) unless null, by a gather over the outputs each input feeds; dw
// (kh, kw, c, dm) unless null, summed over fixed blocks of output rows added in order
// (scratch: depthwise_scratch(s) floats).
void depthwise_backward(const Conv2DShape& s, const float* x, const float* w, const float* dy,
                        float* dx, float* dw, float* scratch);
int64_t depthwise_scratch(const Conv2DShape& s);

// db (f) = column sums of dz (rows, f), in fixed blocks of rows added in order.
void bias_grad(const float* dz, int64_t rows, int64_t f, float* db);

// Direct loops in any precision: the references the tests compare with.
template <class T>
void conv2d_forward_ref(const Conv2DShape& s, const T* x, const T* w, const T* b, T* y);
template <class T>
void conv2d_backward_ref(const Conv2DShape& s, const T* x, const T* w, const T* dz, T* dx,
                         T* dw, T* db);

}  // namespace ember
