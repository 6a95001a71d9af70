// pooling.h: max and average pooling over NHWC images (windowed and global),
// forward and backward.
#pragma once
#include <cstdint>

namespace ember {

// Sizes of one 2-D pooling. Output lengths and 'same' padding follow Keras (see
// conv2d.h); padded positions never win a max and are not counted in an average.
struct Pool2DShape {
  int64_t n = 0, h = 0, w = 0, c = 0;
  int64_t ph = 0, pw = 0, sh = 1, sw = 1;
  int64_t pad_top = 0, pad_left = 0;
  int64_t oh = 0, ow = 0;
};

// Validates (positive sizes, a window that fits under 'valid'); throws
// std::invalid_argument naming the bad value.
Pool2DShape pool2d_shape(int64_t n, int64_t h, int64_t w, int64_t c, int64_t ph, int64_t pw,
                         int64_t sh, int64_t sw, bool same);

// x (n, h, w, c), y (n, oh, ow, c). argmax (n, oh, ow, c) receives, for each output,
// the offset y*w + x of the winning input within its image (the first maximum in
// window order on ties; NaN wins, as in PyTorch). argmax may be null at inference.
void maxpool2d_forward(const Pool2DShape& s, const float* x, float* y, int32_t* argmax);
// dx (n, h, w, c) = the scatter of dy through argmax. Each image is one thread's, so
// overlapping windows add up in a fixed order. relu_y: when the pooled input came out
// of a relu, pass the pooled output y here and the relu's backward is done too
// (relu(max) = max(relu), so the winner passes its gradient only where y > 0),
// saving a pass over the large pre-pool activation.
void maxpool2d_backward(const Pool2DShape& s, const float* dy, const int32_t* argmax,
                        float* dx, const float* relu_y = nullptr);

void avgpool2d_forward(const Pool2DShape& s, const float* x, float* y);
void avgpool2d_backward(const Pool2DShape& s, const float* dy, float* dx);

// Global pooling over the hw positions of each image: x (n, hw, c), y (n, c).
// With mask_ids (n, hw) (token ids; the steps of a sequence), positions whose id is 0
// are left out: the max of the others (argmax -1 and output 0 when none is left), the
// mean over the others (0 when none is left).
void global_maxpool_forward(const float* x, float* y, int32_t* argmax, int64_t n, int64_t hw,
                            int64_t c, const float* mask_ids = nullptr);
void global_maxpool_backward(const float* dy, const int32_t* argmax, float* dx, int64_t n,
                             int64_t hw, int64_t c, const float* relu_y = nullptr);
void global_avgpool_forward(const float* x, float* y, int64_t n, int64_t hw, int64_t c,
                            const float* mask_ids = nullptr);
void global_avgpool_backward(const float* dy, float* dx, int64_t n, int64_t hw, int64_t c,
                             const float* mask_ids = nullptr);

// Direct references in any precision (max: the same tie rule).
template <class T>
void pool2d_forward_ref(const Pool2DShape& s, bool max, const T* x, T* y);
template <class T>
void pool2d_backward_ref(const Pool2DShape& s, bool max, const T* x, const T* dy, T* dx);

}  // namespace ember
