// checks.cpp: validation kernels.
#include "ember/checks.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace ember {

int64_t first_nonfinite(const float* x, int64_t n) {
  constexpr int64_t kBlock = 4096;
  constexpr uint32_t kExp = 0x7f800000u;  // all exponent bits set: inf or NaN
  for (int64_t s = 0; s < n; s += kBlock) {
    const int64_t e = std::min(n, s + kBlock);
    uint32_t bad = 0;
    for (int64_t i = s; i < e; ++i) {  // branch-free, vectorizes
      uint32_t bits;
      std::memcpy(&bits, x + i, sizeof bits);
      bad |= static_cast<uint32_t>((bits & kExp) == kExp);
    }
    if (bad)
      for (int64_t i = s; i < e; ++i)
        if (!std::isfinite(x[i])) return i;
  }
  return -1;
}

}  // namespace ember
