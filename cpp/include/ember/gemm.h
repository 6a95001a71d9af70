// gemm.h: ember's single-precision GEMM, C = alpha * op(A) * op(B) + beta * C,
// row-major, with an optional fused epilogue (bias, relu) applied once at the end.
#pragma once
#include <cstdint>

namespace ember {

enum class Trans { N, T };

// Applied to each element of C after the product is complete:
//   C[i, j] = act(C[i, j] + bias[j]).  bias may be null; act is none or relu.
struct Epilogue {
  const float* bias = nullptr;
  // After the bias, per column: C = C * scale[j] + shift[j] (a BatchNormalization
  // folded in at inference; both or neither). The kernels leave it to sgemm, which
  // applies it block by block while each block of C is still in cache.
  const float* scale = nullptr;
  const float* shift = nullptr;
  bool relu = false;
  // B was just written by this team of threads, split by its rows (weights right after
  // an optimizer step): a product with few rows of A then packs B by rows, each thread
  // where the writer left it, instead of each thread packing the columns it uses:
  // per-thread columns pay off for weights that do not change (inference), but right
  // after the optimizer wrote B by rows they read lines the other core holds, which
  // costs most where the cores share no L3.
  bool b_just_written = false;
};

// op(A) is M x K, op(B) is K x N, C is M x N. lda/ldb/ldc are row strides of the
// arrays as stored (A stored K x M when ta == T). beta == 0 overwrites C (C may hold
// garbage, even NaN); beta == 1 accumulates. Throws std::invalid_argument on bad sizes.
// Deterministic: every C element sums K in the same order whatever the thread count.
void sgemm(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
           float* C, int64_t ldc, const Epilogue* epilogue = nullptr);

// A matrix that is never formed (implicit im2col): its lines, each nseg segments of
// seglen contiguous floats found in some other array. find(ctx, q0, count, ptrs,
// scratch) sets ptrs[(q - q0) * nseg + t] to segment t of line q for q in
// [q0, q0 + count); a segment that is not contiguous in the source (padding) is built
// in scratch at the same offset, scratch + ((q - q0) * nseg + t) * seglen.
struct Lines {
  int64_t nseg = 1, seglen = 1;
  void (*find)(const void* ctx, int64_t q0, int64_t count, const float** ptrs,
               float* scratch) = nullptr;
  const void* ctx = nullptr;
  int64_t length() const { return nseg * seglen; }
};

// sgemm with alpha 1, B untransposed and op(A) given as lines L: ta == N: op(A) = L,
// M lines of K = L.length(); ta == T: op(A) = Lᵀ, K lines of M = L.length(). Same
// contract (beta, epilogue, determinism) as sgemm.
void sgemm_lines(Trans ta, const Lines& L, int64_t M, int64_t N, int64_t K, const float* B,
                 int64_t ldb, float beta, float* C, int64_t ldc,
                 const Epilogue* epilogue = nullptr);

// One layer of sgemm_small_chain: y = epilogue(in w), w k x n and y M x n, row-major.
struct ChainLayer {
  const float* w = nullptr;
  int64_t k = 0, n = 0;
  Epilogue ep;
  float* y = nullptr;
};

// Dense layers at M <= kSmallM rows (batch-1 inference): y_0 = ep_0(x w_0),
// y_1 = ep_1(y_0 w_1), ... Each layer gives the same bits as
// sgemm(N, N, M, n, k, 1, in, k, w, n, 0, y, n, &ep). Consecutive layers that split over
// the threads run in one parallel region with a barrier between them instead of a join
// and a fork, and where the split allows, each thread sums the output columns that it
// then reads as the next layer's input (no other thread touches them). helpers: the
// caller runs no OpenMP region around the chain (a whole forward pass), so the chain
// may run on ember's helper threads (run_on_helpers), which start faster.
void sgemm_small_chain(int64_t M, const float* x, const ChainLayer* layers, int64_t count,
                       bool helpers = false);

// Blocks of columns of C = A B (+ bias) for M <= kSmallM rows, on the calling thread:
// block b is columns [j0[b], j0[b] + w) of B, C and the bias (null: none), A is M x K
// (lda apart). Each element is what sgemm(N, N, M, N, K, 1, A, lda, B, ldb, 0, C, ldc,
// &{bias}) gives it; the k a row of A skips (its zeros) are listed once for every block
// (a recurrent step's four gate blocks of one thread's units).
void sgemm_small_columns(int64_t M, int64_t K, const float* A, int64_t lda, const float* B,
                         int64_t ldb, float* C, int64_t ldc, const float* bias,
                         const int64_t* j0, int64_t blocks, int64_t w);

// While one lives, sgemm on this thread runs on this thread alone: for products too
// small to repay a fork and a join (a recurrent layer's step at batch 1). The bits are
// the same: no product's sums depend on the thread count.
class SerialGemm {
 public:
  explicit SerialGemm(bool on = true);
  ~SerialGemm();
  SerialGemm(const SerialGemm&) = delete;
  SerialGemm& operator=(const SerialGemm&) = delete;

 private:
  bool prev_;
};

// Naive triple loop (double accumulation is NOT used: it sums in float, k ascending),
// kept as the reference the tests compare sgemm with.
void sgemm_ref(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
               float* C, int64_t ldc, const Epilogue* epilogue = nullptr);

// The register micro-kernel interface: C[MR x NR] (+)= Ap * Bp over kc steps, where
// Ap holds kc columns of MR values and Bp kc rows of NR values (packed, zero-padded).
// accumulate == false overwrites C. Only the top-left m x n corner of C is written.
// On the last K block the epilogue rides along: bias (the tile's n columns, or null)
// is added and relu applied as the tile is stored, so C is not read again.
struct GemmKernel {
  const char* name;
  int mr, nr;
  void (*run)(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc,
              int m, int n, bool accumulate, const float* bias, bool relu);
  // The same with A unpacked, read in place: row i (i < m) of the tile is nseg
  // segments of seglen contiguous floats (k = t * seglen + offset), segment t at
  // rows[i * stride + t]. A dense row is one segment; a row of an implicit im2col
  // matrix is one segment per kernel row. Used where packing would only copy.
  void (*run_segs)(int64_t nseg, int64_t seglen, const float* const* rows, int64_t stride,
                   const float* Bp, float* C, int64_t ldc, int m, int n, bool accumulate,
                   const float* bias, bool relu);
  // Unpacked path for a few rows of A in the NN form (batch-1 inference), on the
  // calling thread: C[i, :] (+)= alpha * sum_q A[i, ks[q]] B[ks[q], :] over q < nk,
  // ks ascending. Streams those rows of B once with no packing copy. sgemm lists the
  // k to visit (for one row of A, only where it is nonzero), splits the list into
  // chunks and N into tiles around it, so the kernel sees one chunk of one tile.
  void (*small_nn)(int64_t M, int64_t N, int64_t nk, const int32_t* ks, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                   int64_t ldc, bool accumulate);
  // A narrow C in the Aᵀ·B form (an output layer's weight gradient, 256 x 10 x 128), on
  // the calling thread, with no packing: C[i, j] (+)= alpha * sum_k A[k, i] B[k, j] for
  // i < m, j < n <= kNarrowN, k ascending, then the epilogue. Vectorised along i, which
  // is contiguous in A's rows, with B's values broadcast: no lane is spent past n.
  void (*narrow_tn)(int64_t m, int64_t n, int64_t K, float alpha, const float* A,
                    int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                    bool accumulate, const float* bias, bool relu);
  // A narrow C in the A·B form (an output layer's forward, 128 x 10 x 256), on the
  // calling thread: C[i, j] (+)= alpha * dot(A row i, Bt row j) for i < m, j < n <=
  // kNarrowN, rows k-contiguous (A lda apart, Bt ldbt apart: sgemm transposes B once),
  // then the epilogue. Vectorised along k: eight partial sums per element, added in a
  // fixed order at the end.
  void (*narrow_nn)(int64_t m, int64_t n, int64_t K, float alpha, const float* A,
                    int64_t lda, const float* Bt, int64_t ldbt, float* C, int64_t ldc,
                    bool accumulate, const float* bias, bool relu);
  // The last m <= 3 rows of a block of rows (M = 128 is 21 tiles of 6 rows and one of
  // 2), against `slivers` packed slivers of B (sliver s at Bp + s * bstride, kc x nr;
  // the last one n_last columns wide): what `run` computes tile by tile, with the same
  // bits, several slivers at a time, so that a few rows do not cost a whole tile each.
  // Element (r, k) of A is at A[r * a_row + k * a_k]. Null where the kernel has none.
  void (*edge)(int64_t kc, const float* A, int64_t a_row, int64_t a_k, const float* Bp,
               int64_t bstride, int64_t slivers, int n_last, float* C, int64_t ldc, int m,
               bool accumulate, const float* bias, bool relu);
  // `run` with Aᵀ read in place, a column of the tile's rows at a time: element (r, k),
  // r < m, at cols[k * stride][off + r] (a weight gradient's patch lines: for a sliver
  // inside one segment, its mr values at each k are contiguous). Where the N side is a
  // sliver or two, each value of A is used once or twice: packing it would only copy.
  // Null where the kernel has none (sgemm packs instead).
  void (*run_cols)(int64_t kc, const float* const* cols, int64_t stride, int64_t off,
                   const float* Bp, float* C, int64_t ldc, int m, int n, bool accumulate,
                   const float* bias, bool relu) = nullptr;
};

// Widest C the narrow paths take.
constexpr int64_t kNarrowN = 12;

// sgemm takes the small_nn path when M <= kSmallM and both operands are untransposed.
constexpr int64_t kSmallM = 4;


// The kernel sgemm dispatches to (chosen once, at first use).
const GemmKernel& gemm_kernel();
// The portable kernel, always available.
const GemmKernel& gemm_kernel_generic();

}  // namespace ember
