// resample_nodes.cpp: upsampling, zero padding and cropping nodes.
#include "ember/nodes.h"
#include "ember/resample.h"

namespace ember {

void UpsampleNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  upsample_nearest_forward(x[0], y, n, h_, w_, c_, sh_, sw_);
}

void UpsampleNode::backward(const StepCtx&, const float* const*, const float*, float* dy,
                            float* const* dx, int64_t n, bool) {
  if (dx[0]) upsample_nearest_backward(dy, dx[0], n, h_, w_, c_, sh_, sw_);
}

void ShiftWindowNode::forward(const StepCtx&, const float* const* x, float* y, int64_t n) {
  shift_window(x[0], h_, w_, y, oh_, ow_, n, c_, oy_, ox_);
}

void ShiftWindowNode::backward(const StepCtx&, const float* const*, const float*, float* dy,
                               float* const* dx, int64_t n, bool) {
  if (dx[0]) shift_window(dy, oh_, ow_, dx[0], h_, w_, n, c_, -oy_, -ox_);
}

}  // namespace ember
