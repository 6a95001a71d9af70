// checks.h: input validation kernels (no temporaries, for arrays of any size).
#pragma once
#include <cstdint>

namespace ember {

// Index of the first NaN or infinity in x[0, n), or -1 when every value is finite.
int64_t first_nonfinite(const float* x, int64_t n);

}  // namespace ember
