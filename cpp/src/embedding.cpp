// embedding.cpp: gather forward, sparse deterministic backward, and the fused
// embedding + global max pooling used by text classifiers.
#include "ember/embedding.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ember/parallel.h"
#include "ember/vector_isa.h"

namespace ember {
namespace {

inline int32_t row_of(float id) { return static_cast<int32_t>(id); }

// a beats b: greater, or NaN over a number (the pooling tie rule).
inline bool beats(float a, float b) { return (a > b) | ((a != a) & (b == b)); }

// Columns per task in the column-parallel scatters: 16 floats = one cache line.
constexpr int64_t kColBlock = 16;

#define EMBER_VECTOR_LOOPS "embedding_loops.inc"
#include "ember/vector_variants.inc"

}  // namespace

int64_t embedding_bad_id(const float* ids, int64_t n, int64_t vocab) {
  const float limit = static_cast<float>(vocab);
  for (int64_t i = 0; i < n; ++i) {
    const float v = ids[i];
    if (!(v >= 0.f && v < limit && v == std::floor(v))) return i;
  }
  return -1;
}

void embedding_forward(const float* ids, const float* table, float* y, int64_t n, int64_t dim) {
#pragma omp parallel for schedule(static) if (n * dim > (1 << 15))
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(y + i * dim, table + static_cast<int64_t>(row_of(ids[i])) * dim,
                sizeof(float) * dim);
}

void embedding_maxpool_forward(const float* ids, const float* table, float* y, int32_t* argmax,
                               int64_t n, int64_t steps, int64_t dim, bool mask_zero) {
  EMBER_VECTOR_CALL(embedding_maxpool_forward, ids, table, y, argmax, n, steps, dim, mask_zero);
}

int64_t collect_rows(const float* ids, int64_t n, int32_t* slot, int32_t* rows) {
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t r = row_of(ids[i]);
    if (slot[r] < 0) {
      slot[r] = static_cast<int32_t>(count);
      rows[count++] = r;
    }
  }
  return count;
}

int64_t collect_argmax_rows(const float* ids, const int32_t* argmax, int64_t n,
                            int64_t steps, int64_t dim, int32_t* slot, int32_t* rows) {
  int64_t count = 0;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t j = 0; j < dim; ++j) {
      const int32_t t = argmax[b * dim + j];
      if (t < 0) continue;
      const int32_t r = row_of(ids[b * steps + t]);
      if (slot[r] < 0) {
        slot[r] = static_cast<int32_t>(count);
        rows[count++] = r;
      }
    }
  return count;
}

void clear_rows(int32_t* slot, const int32_t* rows, int64_t count) {
  for (int64_t k = 0; k < count; ++k) slot[rows[k]] = -1;
}

void embedding_backward(const float* ids, const float* dy, int64_t n, int64_t dim,
                        const int32_t* slot, int64_t count, int64_t* offsets, int32_t* order,
                        float* values) {
  EMBER_VECTOR_CALL(embedding_backward, ids, dy, n, dim, slot, count, offsets, order, values);
}

void embedding_maxpool_backward(const float* ids, const int32_t* argmax, const float* dy,
                                int64_t n, int64_t steps, int64_t dim, const int32_t* slot,
                                int64_t count, float* values) {
  const int64_t blocks = (dim + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static) if (n * dim > (1 << 14))
  for (int64_t cb = 0; cb < blocks; ++cb) {
    const int64_t j0 = cb * kColBlock, j1 = std::min(dim, j0 + kColBlock);
    for (int64_t k = 0; k < count; ++k)
      std::fill(values + k * dim + j0, values + k * dim + j1, 0.f);
    for (int64_t b = 0; b < n; ++b)
      for (int64_t j = j0; j < j1; ++j) {
        const int32_t t = argmax[b * dim + j];
        if (t < 0) continue;
        values[static_cast<int64_t>(slot[row_of(ids[b * steps + t])]) * dim + j] +=
            dy[b * dim + j];
      }
  }
}

}  // namespace ember
