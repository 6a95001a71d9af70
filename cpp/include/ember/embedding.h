// embedding.h: an embedding table lookup (gather) and its sparse gradient
// (deterministic scatter-add into only the rows the batch used).
#pragma once
#include <cstdint>

namespace ember {

// The gradient of a (rows, cols) table as its non-zero rows: values (count, cols) holds
// the gradient of table row rows[k] in row k; slot[r] is the k of table row r, or -1.
// The optimizer reads it in place of a dense gradient (optimizers.h).
struct SparseRows {
  int64_t count = 0, cols = 0;
  const int32_t* rows = nullptr;
  const int32_t* slot = nullptr;  // (table rows)
  const float* values = nullptr;  // (count, cols)
};

// The first of ids[0..n) that is not a whole number in [0, vocab), as its position,
// or -1 when all are valid. Ids arrive as floats (exact below 2^24).
int64_t embedding_bad_id(const float* ids, int64_t n, int64_t vocab);

// y (n, dim): row ids[i] of table (vocab, dim) for each i. Ids must be valid.
void embedding_forward(const float* ids, const float* table, float* y, int64_t n, int64_t dim);

// Embedding followed by global max pooling over the steps, without the (n, steps, dim)
// intermediate: y (n, dim) = max over t of table[ids[b, t]]; argmax (n, dim) gets the
// winning step (first maximum on ties, NaN wins) or is null. With mask_zero, steps whose
// id is 0 are skipped; a sample with every step masked gives 0 and argmax -1.
void embedding_maxpool_forward(const float* ids, const float* table, float* y,
                               int32_t* argmax, int64_t n, int64_t steps, int64_t dim,
                               bool mask_zero);

// Distinct rows of ids[0..n), in first-seen order: writes rows[0..count) and
// slot[row] = k for each (slot must be -1 everywhere on entry); returns count.
int64_t collect_rows(const float* ids, int64_t n, int32_t* slot, int32_t* rows);
// Collects only the rows that won a max (argmax (n, dim) steps over ids (n, steps)).
int64_t collect_argmax_rows(const float* ids, const int32_t* argmax, int64_t n,
                            int64_t steps, int64_t dim, int32_t* slot, int32_t* rows);
// Resets slot to -1 for the rows collected.
void clear_rows(int32_t* slot, const int32_t* rows, int64_t count);

// values (count, dim) = for each collected row, the sum of dy[i] over the positions i
// whose id is that row, added in increasing i (any thread count gives the same bits).
// offsets (count + 1) and order (n) are scratch.
void embedding_backward(const float* ids, const float* dy, int64_t n, int64_t dim,
                        const int32_t* slot, int64_t count, int64_t* offsets, int32_t* order,
                        float* values);
// The fused max pooling's backward: values (count, dim) = the sum, over samples b in
// order, of dy[b, j] into the row that won output (b, j).
void embedding_maxpool_backward(const float* ids, const int32_t* argmax, const float* dy,
                                int64_t n, int64_t steps, int64_t dim, const int32_t* slot,
                                int64_t count, float* values);

}  // namespace ember
