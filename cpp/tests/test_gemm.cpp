// test_gemm.cpp: sgemm against the naive reference in every form, on awkward
// shapes, for the dispatched kernel (run again under EMBER_GEMM_KERNEL=generic).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>
#include <tuple>
#include <vector>

#include "ember/buffer.h"
#include "ember/gemm.h"
#include "ember/parallel.h"
#include "test_util.h"

using namespace ember;
using ember_test::max_rel_err;
using ember_test::random_vec;

namespace {

struct Case {
  int64_t M, N, K;
};

void run_case(Trans ta, Trans tb, Case c, float alpha, float beta, bool epilogue) {
  const int64_t lda = ta == Trans::N ? c.K : c.M;
  const int64_t ldb = tb == Trans::N ? c.N : c.K;
  auto A = random_vec(c.M * c.K, 1), B = random_vec(c.K * c.N, 2);
  auto C0 = random_vec(c.M * c.N, 3), bias = random_vec(c.N, 4);
  auto C = C0, R = C0;
  Epilogue ep;
  ep.bias = bias.data();
  ep.relu = true;
  sgemm(ta, tb, c.M, c.N, c.K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), c.N,
        epilogue ? &ep : nullptr);
  sgemm_ref(ta, tb, c.M, c.N, c.K, alpha, A.data(), lda, B.data(), ldb, beta, R.data(), c.N,
            epilogue ? &ep : nullptr);
  EXPECT_LT(max_rel_err(C, R), 1e-4 * std::sqrt(double(c.K) + 1))
      << "M=" << c.M << " N=" << c.N << " K=" << c.K << " ta=" << int(ta) << " tb=" << int(tb)
      << " beta=" << beta;
}

// 1, MR +- 1 (6, 4), NR +- 1 (16, 8), KC + 1 (401; K past one whole block: 513), primes,
// sizes past every block.
const Case kCases[] = {{1, 1, 1},    {1, 17, 5},   {5, 1, 3},     {7, 15, 9},   {6, 16, 256},
                       {5, 17, 257}, {5, 17, 401}, {3, 9, 7},    {13, 31, 37},  {97, 89, 83},
                       {145, 33, 513},
                       // rows of A 512 and 1024 floats apart: A packed even when untransposed
                       {13, 37, 512}, {70, 20, 1024}, {150, 21, 512},
                       {200, 3100, 20}, {64, 10, 300}, {128, 512, 784}, {1, 512, 784},
                       {4, 33, 70},  {2, 100, 1000}, {1, 7, 3000},
                       // small M: K in several chunks, N in several tiles with a tail
                       {3, 2100, 515}, {4, 1029, 257}, {1, 2051, 4},
                       // narrow C (N <= 12): an output layer's shapes, ragged rows
                       {256, 10, 128}, {37, 12, 130}, {17, 11, 16}, {9, 5, 33},
                       // short K (an output layer's input gradient), ragged row groups
                       {128, 256, 8}, {128, 256, 10}, {37, 33, 3}, {6, 100, 16},
                       {33, 45, 16}, {9, 24, 11}, {7, 19, 17},
                       // split-K: small C, long K (conv1's weight gradient), uneven last chunk
                       {27, 32, 9000}, {5, 3, 4097},
                       // split-K with a C of 256 KB or less: chunks rounded to a multiple of 4
                       {100, 600, 5000}};

}  // namespace

TEST(Gemm, KernelReported) { EXPECT_NE(std::string(gemm_kernel().name), ""); }

TEST(Gemm, AllFormsOverwrite) {
  for (auto ta : {Trans::N, Trans::T})
    for (auto tb : {Trans::N, Trans::T})
      for (const Case& c : kCases) run_case(ta, tb, c, 1.f, 0.f, false);
}

TEST(Gemm, AllFormsAccumulate) {
  for (auto ta : {Trans::N, Trans::T})
    for (auto tb : {Trans::N, Trans::T})
      for (const Case& c : kCases) run_case(ta, tb, c, 1.f, 1.f, false);
}

TEST(Gemm, AlphaBetaAndEpilogue) {
  for (const Case& c : kCases) {
    run_case(Trans::N, Trans::N, c, 0.5f, 0.25f, false);
    run_case(Trans::N, Trans::N, c, 1.f, 0.f, true);
    run_case(Trans::T, Trans::N, c, 2.f, 1.f, true);
  }
}

TEST(Gemm, BetaZeroIgnoresNaNInC) {
  const int64_t M = 7, N = 19, K = 5;
  auto A = random_vec(M * K, 1), B = random_vec(K * N, 2);
  std::vector<float> C(M * N, std::nanf("")), R(M * N, 0.f);
  sgemm(Trans::N, Trans::N, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C.data(), N);
  sgemm_ref(Trans::N, Trans::N, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, R.data(), N);
  EXPECT_LT(max_rel_err(C, R), 1e-5);
}

TEST(Gemm, EmptyK) {
  std::vector<float> C(6, 3.f), A(1), B(1);
  sgemm(Trans::N, Trans::N, 2, 3, 0, 1.f, A.data(), 1, B.data(), 3, 0.f, C.data(), 3);
  for (float v : C) EXPECT_EQ(v, 0.f);
}

TEST(Gemm, RejectsBadSizes) {
  std::vector<float> A(4), B(4), C(4);
  EXPECT_THROW(sgemm(Trans::N, Trans::N, -1, 2, 2, 1.f, A.data(), 2, B.data(), 2, 0.f, C.data(), 2),
               std::invalid_argument);
  EXPECT_THROW(sgemm(Trans::N, Trans::N, 2, 2, 2, 1.f, A.data(), 1, B.data(), 2, 0.f, C.data(), 2),
               std::invalid_argument);
}

TEST(Gemm, BitIdenticalForAnyThreadCount) {
  // The packed path (NT; NN with A packed for its 1024-float rows; one block of rows,
  // NN and NT, where the threads pack B apart), the split-K path
  // (TN, small C over a long K), the narrow TN and NN paths, the short-K path and the
  // small-M path (NN, K in chunks, N in tiles).
  for (auto [c, ta, tb] : {std::make_tuple(Case{301, 517, 700}, Trans::N, Trans::T),
                           std::make_tuple(Case{301, 517, 1024}, Trans::N, Trans::N),
                           std::make_tuple(Case{27, 32, 9000}, Trans::T, Trans::N),
                           std::make_tuple(Case{100, 600, 5000}, Trans::T, Trans::N),
                           std::make_tuple(Case{100, 600, 5000}, Trans::N, Trans::N),
                           std::make_tuple(Case{301, 10, 700}, Trans::T, Trans::N),
                           std::make_tuple(Case{301, 11, 700}, Trans::N, Trans::N),
                           std::make_tuple(Case{301, 517, 8}, Trans::N, Trans::T),
                           std::make_tuple(Case{301, 517, 16}, Trans::N, Trans::T),
                           std::make_tuple(Case{301, 21, 13}, Trans::N, Trans::N),
                           // enough row blocks to be handed out to whichever thread is free
                           std::make_tuple(Case{1000, 64, 300}, Trans::N, Trans::N),
                           // one block of rows: each task packs its own slivers of B
                           std::make_tuple(Case{100, 517, 900}, Trans::N, Trans::N),
                           std::make_tuple(Case{100, 517, 900}, Trans::N, Trans::T),
                           std::make_tuple(Case{3, 2100, 1000}, Trans::N, Trans::N)}) {
    const int64_t lda = ta == Trans::N ? c.K : c.M, ldb = tb == Trans::N ? c.N : c.K;
    auto A = random_vec(c.M * c.K, 5), B = random_vec(c.K * c.N, 6);
    std::vector<float> out[3];
    const int saved = get_num_threads();
    for (int t = 1; t <= 3; ++t) {
      set_num_threads(t);
      out[t - 1].resize(c.M * c.N);
      sgemm(ta, tb, c.M, c.N, c.K, 1.f, A.data(), lda, B.data(), ldb, 0.f, out[t - 1].data(),
            c.N);
    }
    set_num_threads(saved);
    EXPECT_EQ(0, std::memcmp(out[0].data(), out[1].data(), sizeof(float) * c.M * c.N));
    EXPECT_EQ(0, std::memcmp(out[0].data(), out[2].data(), sizeof(float) * c.M * c.N));
  }
}

// B "just written" (training) is packed by rows, shared, instead of by each thread's
// columns: the same bits either way, for any thread count.
TEST(Gemm, PackingOfBDoesNotChangeBits) {
  const Case c{100, 517, 900};
  auto A = random_vec(c.M * c.K, 7), B = random_vec(c.K * c.N, 8), bias = random_vec(c.N, 9);
  const int saved = get_num_threads();
  std::vector<float> first;
  for (int t = 1; t <= 3; ++t)
    for (bool written : {false, true}) {
      set_num_threads(t);
      Epilogue ep;
      ep.bias = bias.data();
      ep.relu = true;
      ep.b_just_written = written;
      std::vector<float> out(c.M * c.N);
      sgemm(Trans::N, Trans::N, c.M, c.N, c.K, 1.f, A.data(), c.K, B.data(), c.N, 0.f,
            out.data(), c.N, &ep);
      if (first.empty())
        first = out;
      else
        EXPECT_EQ(0, std::memcmp(first.data(), out.data(), sizeof(float) * out.size()))
            << t << " threads, b_just_written " << written;
    }
  set_num_threads(saved);
}

// The last 1-3 rows of a block of rows (M = 128 = 21 x 6 + 2) take the kernel's edge
// path; the same rows inside a whole tile (M rounded up to a multiple of 6, the extra
// rows of A random) must come out with the same bits: A read in place and packed
// (1024-float rows), transposed A, one and several K blocks, overwrite and accumulate,
// bias and ReLU, a last sliver of B that is partly padding, 1 to 3 threads.
TEST(Gemm, EdgeRowsMatchFullTiles) {
  struct EdgeCase {
    int64_t M, N, K;
    Trans ta;
  };
  for (auto c : {EdgeCase{128, 256, 512, Trans::N}, EdgeCase{128, 40, 784, Trans::N},
                 EdgeCase{127, 517, 300, Trans::N}, EdgeCase{13, 100, 1024, Trans::N},
                 EdgeCase{512, 37, 128, Trans::T}, EdgeCase{7, 64, 900, Trans::T}}) {
    const int64_t full = (c.M + 5) / 6 * 6;
    auto A = random_vec(full * c.K, 11), B = random_vec(c.K * c.N, 12);
    auto bias = random_vec(c.N, 13), C0 = random_vec(full * c.N, 14);
    // A (M x K or, transposed, K x M) as the first M rows (or columns) of the full one.
    std::vector<float> a_small(c.M * c.K);
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t k = 0; k < c.K; ++k)
        (c.ta == Trans::N ? a_small[i * c.K + k] : a_small[k * c.M + i]) =
            c.ta == Trans::N ? A[i * c.K + k] : A[k * full + i];
    const int saved = get_num_threads();
    for (int t = 1; t <= 3; ++t)
      for (float beta : {0.f, 1.f})
        for (bool ep_on : {false, true}) {
          set_num_threads(t);
          Epilogue ep;
          ep.bias = bias.data();
          ep.relu = true;
          std::vector<float> big(C0.begin(), C0.end()), small(C0.begin(), C0.begin() + c.M * c.N);
          sgemm(c.ta, Trans::N, full, c.N, c.K, 1.f, A.data(), c.ta == Trans::N ? c.K : full,
                B.data(), c.N, beta, big.data(), c.N, ep_on ? &ep : nullptr);
          sgemm(c.ta, Trans::N, c.M, c.N, c.K, 1.f, a_small.data(),
                c.ta == Trans::N ? c.K : c.M, B.data(), c.N, beta, small.data(), c.N,
                ep_on ? &ep : nullptr);
          EXPECT_EQ(0, std::memcmp(big.data(), small.data(), sizeof(float) * c.M * c.N))
              << c.M << "x" << c.N << "x" << c.K << " ta " << int(c.ta) << ", " << t
              << " threads, beta " << beta << ", epilogue " << ep_on;
        }
    set_num_threads(saved);
  }
}

// One row of A (batch-1 inference) skips the rows of B where A is zero: a ReLU output
// half zeros, one mostly zeros, one all zeros, with and without accumulation, on shapes
// that take one chunk, several chunks and the threaded split.
TEST(Gemm, SingleRowSkipsZerosOfA) {
  for (Case c : {Case{1, 37, 9}, Case{1, 512, 784}, Case{1, 2051, 1000}, Case{1, 10, 256}})
    for (double density : {0.5, 0.05, 0.0})
      for (float beta : {0.f, 1.f}) {
        auto A = random_vec(c.K, 11), B = random_vec(c.K * c.N, 12);
        for (int64_t k = 0; k < c.K; ++k)
          if ((k * 7919 % 1000) >= density * 1000) A[k] = k % 2 ? 0.f : -0.f;
        auto C = random_vec(c.N, 13), R = C;
        sgemm(Trans::N, Trans::N, 1, c.N, c.K, 1.f, A.data(), c.K, B.data(), c.N, beta,
              C.data(), c.N);
        sgemm_ref(Trans::N, Trans::N, 1, c.N, c.K, 1.f, A.data(), c.K, B.data(), c.N, beta,
                  R.data(), c.N);
        EXPECT_LT(max_rel_err(C, R), 1e-4 * std::sqrt(double(c.K) + 1))
            << "N=" << c.N << " K=" << c.K << " density=" << density << " beta=" << beta;
      }
}

// The skip depends on the data alone: still the same bits for any thread count, and a
// NaN in A (nonzero) still reaches every output.
TEST(Gemm, SingleRowSkipBitIdenticalAndNaNInA) {
  const int64_t N = 700, K = 1500;
  auto A = random_vec(K, 14), B = random_vec(K * N, 15);
  for (int64_t k = 0; k < K; k += 3) A[k] = 0.f;
  std::vector<float> out[3];
  const int saved = get_num_threads();
  for (int t = 1; t <= 3; ++t) {
    set_num_threads(t);
    out[t - 1].resize(N);
    sgemm(Trans::N, Trans::N, 1, N, K, 1.f, A.data(), K, B.data(), N, 0.f, out[t - 1].data(), N);
  }
  set_num_threads(saved);
  EXPECT_EQ(0, std::memcmp(out[0].data(), out[1].data(), sizeof(float) * N));
  EXPECT_EQ(0, std::memcmp(out[0].data(), out[2].data(), sizeof(float) * N));
  A[K / 2] = std::nanf("");
  sgemm(Trans::N, Trans::N, 1, N, K, 1.f, A.data(), K, B.data(), N, 0.f, out[0].data(), N);
  for (float v : out[0]) EXPECT_TRUE(std::isnan(v));
}

// Blocks of columns (a recurrent step's gate blocks for one thread's units) give the bits
// the whole product gives them: 1 to 4 rows and the fallback past them, K in one chunk
// and past it, zeros in A, with and without a bias.
TEST(Gemm, SmallColumnsMatchTheWholeProduct) {
  const int64_t N = 512, w = 48;
  const int64_t starts[] = {16, 128 + 16, 256 + 16, 384 + 16};
  for (int64_t M : {1, 2, 4, 5})
    for (int64_t K : {9, 128, 300})
      for (bool with_bias : {false, true}) {
        auto A = random_vec(M * K, 21), B = random_vec(K * N, 22), bias = random_vec(N, 23);
        for (int64_t k = 0; k < M * K; k += 5) A[k] = 0.f;
        Epilogue ep;
        ep.bias = with_bias ? bias.data() : nullptr;
        std::vector<float> whole(M * N), cols(M * N, -7.f);
        sgemm(Trans::N, Trans::N, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, whole.data(),
              N, &ep);
        sgemm_small_columns(M, K, A.data(), K, B.data(), N, cols.data(), N, ep.bias, starts, 4,
                            w);
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < N; ++j) {
            const bool in_block = (j % 128) >= 16 && (j % 128) < 16 + w;
            ASSERT_EQ(in_block ? whole[i * N + j] : -7.f, cols[i * N + j])
                << "M=" << M << " K=" << K << " row " << i << " column " << j;
          }
      }
}

// A chain of Dense layers at M <= 4 rows gives, layer by layer, the same bits as one
// sgemm each, for 1 to 4 threads: the MLP (784-512-256-10: a region of two layers with
// each thread summing the columns it reads next, then one on this thread), layers
// whose next one is split by columns (one chunk each, or 8 chunks for 3 or 4 threads
// of 2), a ReLU output with zeros skipped, and a NaN in the input reaching the end.
// Twice each (every other call, the threads take their tasks in reverse order) on
// OpenMP's threads and on ember's helper threads.
TEST(Gemm, SmallChainMatchesOneSgemmPerLayer) {
  const std::vector<std::vector<int64_t>> nets = {{784, 512, 256, 10}, {300, 200, 700, 150},
                                                  {1500, 64, 2000, 9}, {5, 7}};
  const int saved = get_num_threads();
  for (const auto& sizes : nets)
    for (int64_t M : {1, 2, 4}) {
      const int64_t count = static_cast<int64_t>(sizes.size()) - 1;
      std::vector<std::vector<float>> w(count), b(count), want(count);
      auto x = random_vec(M * sizes[0], 20);
      for (int64_t k = 0; k < M * sizes[0]; k += 5) x[k] = 0.f;
      for (int64_t l = 0; l < count; ++l) {
        w[l] = random_vec(sizes[l] * sizes[l + 1], 21 + l);
        b[l] = random_vec(sizes[l + 1], 31 + l);
        Epilogue ep;
        ep.bias = b[l].data();
        ep.relu = l + 1 < count;
        want[l].resize(M * sizes[l + 1]);
        sgemm(Trans::N, Trans::N, M, sizes[l + 1], sizes[l], 1.f,
              l ? want[l - 1].data() : x.data(), sizes[l], w[l].data(), sizes[l + 1], 0.f,
              want[l].data(), sizes[l + 1], &ep);
      }
      for (int t = 1; t <= 4; ++t) {
        set_num_threads(t);
        std::vector<std::vector<float>> got(count);
        std::vector<ChainLayer> layers(count);
        for (int64_t l = 0; l < count; ++l) {
          got[l].assign(M * sizes[l + 1], 7.f);
          layers[l].w = w[l].data();
          layers[l].k = sizes[l];
          layers[l].n = sizes[l + 1];
          layers[l].ep.bias = b[l].data();
          layers[l].ep.relu = l + 1 < count;
          layers[l].y = got[l].data();
        }
        // Threads alternate their task order call by call; OpenMP's team, then the helpers.
        for (int call = 0; call < 4; ++call) {
          sgemm_small_chain(M, x.data(), layers.data(), count, call >= 2);
          for (int64_t l = 0; l < count; ++l)
            EXPECT_EQ(0,
                      std::memcmp(got[l].data(), want[l].data(), sizeof(float) * got[l].size()))
                << "net " << sizes[0] << "-" << sizes[1] << " M=" << M << " layer " << l
                << " threads " << t << " call " << call;
        }
      }
      set_num_threads(saved);
      if (M == 1) {  // NaN in, NaN out (it counts as nonzero in every layer's list)
        x[3] = std::nanf("");
        std::vector<std::vector<float>> got(count);
        std::vector<ChainLayer> layers(count);
        for (int64_t l = 0; l < count; ++l) {
          got[l].resize(sizes[l + 1]);
          layers[l].w = w[l].data();
          layers[l].k = sizes[l];
          layers[l].n = sizes[l + 1];
          layers[l].y = got[l].data();
        }
        sgemm_small_chain(1, x.data(), layers.data(), count);
        for (float v : got[count - 1]) EXPECT_TRUE(std::isnan(v));
      }
    }
}

// Each job runs every t once, on the helpers, or (while they wake up) as t = 0 of a
// team of one on the calling thread; awake, the helpers take part, for a team that
// grows and shrinks, and again after they have slept. One thread is declined.
TEST(Gemm, HelperThreadsRunEveryShare) {
  struct Job {
    std::atomic<int> hits[8];
    std::atomic<int> team{0};
  } job;
  auto fn = [](void* ctx, int t, int threads) {
    auto* j = static_cast<Job*>(ctx);
    j->hits[t].fetch_add(1);
    j->team = threads;
  };
  EXPECT_FALSE(run_on_helpers(1, fn, &job));
  auto run = [&](int threads) {  // true when the helpers took part
    for (auto& h : job.hits) h = 0;
    EXPECT_TRUE(run_on_helpers(threads, fn, &job));
    const int team = job.team.load();
    EXPECT_TRUE(team == threads || team == 1) << team;
    for (int t = 0; t < 8; ++t) EXPECT_EQ(job.hits[t].load(), t < team ? 1 : 0) << t;
    return team == threads;
  };
  for (int threads : {2, 3, 2, 4}) {
    int full = 0;
    for (int rep = 0; rep < 5000 && full < 50; ++rep) {
      if (run(threads))
        ++full;
      else
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    EXPECT_EQ(full, 50) << threads << " threads";
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(10));  // past the spinning
  bool woke = false;
  for (int rep = 0; rep < 2000 && !woke; ++rep) {
    woke = run(2);
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  EXPECT_TRUE(woke);
}

TEST(Gemm, SmallChainRejectsBadShapes) {
  std::vector<float> x(8), w(64), y(64);
  ChainLayer layers[2];
  layers[0] = {w.data(), 8, 4, {}, y.data()};
  layers[1] = {w.data(), 5, 2, {}, y.data()};  // 5 inputs after 4 outputs
  EXPECT_THROW(sgemm_small_chain(1, x.data(), layers, 2), std::invalid_argument);
  EXPECT_THROW(sgemm_small_chain(5, x.data(), layers, 1), std::invalid_argument);
  EXPECT_THROW(sgemm_small_chain(1, x.data(), layers, 0), std::invalid_argument);
}

// The portable micro-kernel directly, whatever sgemm dispatches to.
TEST(Gemm, GenericMicroKernel) {
  const GemmKernel& k = gemm_kernel_generic();
  const int64_t kc = 37;
  auto Ap = random_vec(kc * k.mr, 7), Bp = random_vec(kc * k.nr, 8);
  std::vector<float> C(k.mr * k.nr, 1.f);
  k.run(kc, Ap.data(), Bp.data(), C.data(), k.nr, k.mr, k.nr, true, nullptr, false);
  for (int i = 0; i < k.mr; ++i)
    for (int j = 0; j < k.nr; ++j) {
      double s = 1.0;
      for (int64_t p = 0; p < kc; ++p) s += double(Ap[p * k.mr + i]) * Bp[p * k.nr + j];
      EXPECT_NEAR(C[i * k.nr + j], s, 1e-4);
    }
}

// The running kernel's in-place Aᵀ tile (a weight gradient's patch lines) against its
// packed tile: the same values in the same k order, so the same bits, for every row
// count (rows past m repeat the last, never stored), narrow C, bias and relu.
TEST(Gemm, InPlaceTransposedTileMatchesPackedBits) {
  const GemmKernel& k = gemm_kernel();
  if (!k.run_cols) GTEST_SKIP() << k.name << " packs Aᵀ";
  const int64_t kc = 53, len = 4 * k.mr, off = 2 * k.mr;
  // Line p holds its segment at pool + p * (len + 5): rows of A at [off, off + mr).
  auto pool = random_vec(kc * (len + 5), 21), b = random_vec(kc * k.nr, 22),
       bias = random_vec(k.nr, 23);
  FloatBuffer Bp;  // packed B is aligned for the kernels' loads
  Bp.resize(b.size());
  std::copy(b.begin(), b.end(), Bp.data());
  std::vector<const float*> cols(kc * 2);
  for (int64_t p = 0; p < kc; ++p) cols[p * 2] = pool.data() + p * (len + 5);
  for (int m = 1; m <= k.mr; ++m)
    for (int n : {k.nr, k.nr - 3})
      for (bool accumulate : {false, true}) {
        std::vector<float> Ap(kc * k.mr, 0.f);
        for (int64_t p = 0; p < kc; ++p)
          for (int r = 0; r < m; ++r) Ap[p * k.mr + r] = cols[p * 2][off + r];
        auto C = random_vec(k.mr * k.nr, 24), R = C;
        k.run_cols(kc, cols.data(), 2, off, Bp.data(), C.data(), k.nr, m, n, accumulate,
                   bias.data(), !accumulate);
        k.run(kc, Ap.data(), Bp.data(), R.data(), k.nr, m, n, accumulate, bias.data(),
              !accumulate);
        EXPECT_EQ(0, std::memcmp(C.data(), R.data(), sizeof(float) * C.size()))
            << k.name << " m=" << m << " n=" << n << " accumulate=" << accumulate;
      }
}

namespace {

// Lines of a dense (lines x nseg * seglen) matrix D, their segments scattered through
// a pool in a shuffled order; every third segment is built in scratch instead, as a
// padded convolution window's would be.
struct Scattered {
  int64_t nseg, seglen;
  std::vector<float> dense, pool;
  std::vector<int64_t> where;  // pool offset of segment (q, t)
  Lines lines() const {
    Lines L;
    L.nseg = nseg;
    L.seglen = seglen;
    L.ctx = this;
    L.find = [](const void* ctx, int64_t q0, int64_t count, const float** ptrs,
                float* scratch) {
      const Scattered& S = *static_cast<const Scattered*>(ctx);
      for (int64_t q = 0; q < count; ++q)
        for (int64_t t = 0; t < S.nseg; ++t) {
          const int64_t i = q * S.nseg + t, g = (q0 + q) * S.nseg + t;
          if (g % 3 == 2) {
            float* d = scratch + i * S.seglen;
            std::memcpy(d, S.dense.data() + g * S.seglen, sizeof(float) * S.seglen);
            ptrs[i] = d;
          } else {
            ptrs[i] = S.pool.data() + S.where[g];
          }
        }
    };
    return L;
  }
};

Scattered scattered(int64_t count, int64_t nseg, int64_t seglen, uint32_t seed) {
  Scattered S{nseg, seglen, random_vec(count * nseg * seglen, seed), {}, {}};
  const int64_t segs = count * nseg;
  std::vector<int64_t> order(segs);
  // A permutation: 7919 is a prime that divides no case's segment count.
  for (int64_t g = 0; g < segs; ++g) order[g] = (g * 7919) % segs;
  S.where.resize(segs);
  S.pool.resize(segs * seglen);
  for (int64_t g = 0; g < segs; ++g) {
    S.where[g] = order[g] * seglen;
    std::memcpy(S.pool.data() + S.where[g], S.dense.data() + g * seglen, sizeof(float) * seglen);
  }
  return S;
}

struct LinesCase {
  int64_t count, nseg, seglen, N;
};

}  // namespace

// sgemm_lines against sgemm_ref on the dense matrix: op(A) = L (M lines of K) and
// op(A) = Lᵀ (K lines of M), overwrite and accumulate, with the epilogue; shapes that
// take the small-M path, split-K, segments longer than a K block, and ragged tiles.
TEST(Gemm, ImplicitLinesMatchDense) {
  const LinesCase cases[] = {{1, 3, 9, 32},    {3, 2, 5, 40},    {7, 3, 9, 17},
                             {145, 3, 96, 64}, {61, 9, 3, 33},   {50, 1, 300, 20},
                             {200, 2, 200, 70}, {9000, 3, 9, 32}, {4500, 2, 1, 3}};
  for (const LinesCase& c : cases) {
    const Scattered S = scattered(c.count, c.nseg, c.seglen, 11);
    const Lines L = S.lines();
    const int64_t len = L.length();
    for (Trans ta : {Trans::N, Trans::T}) {
      const int64_t M = ta == Trans::N ? c.count : len, K = ta == Trans::N ? len : c.count;
      auto B = random_vec(K * c.N, 12), bias = random_vec(c.N, 13);
      for (float beta : {0.f, 1.f}) {
        Epilogue ep;
        ep.bias = bias.data();
        ep.relu = beta == 0.f;
        auto C = random_vec(M * c.N, 14), R = C;
        sgemm_lines(ta, L, M, c.N, K, B.data(), c.N, beta, C.data(), c.N, &ep);
        sgemm_ref(ta, Trans::N, M, c.N, K, 1.f, S.dense.data(), len, B.data(), c.N, beta,
                  R.data(), c.N, &ep);
        EXPECT_LT(max_rel_err(C, R), 1e-4 * std::sqrt(double(K) + 1))
            << "lines=" << c.count << " nseg=" << c.nseg << " seglen=" << c.seglen
            << " N=" << c.N << " ta=" << int(ta) << " beta=" << beta;
      }
    }
  }
}

TEST(Gemm, ImplicitLinesBitIdenticalForAnyThreadCount) {
  const Scattered S = scattered(5000, 3, 96, 15);
  const Lines L = S.lines();
  for (Trans ta : {Trans::N, Trans::T}) {
    const int64_t M = ta == Trans::N ? 5000 : 288, K = ta == Trans::N ? 288 : 5000, N = 64;
    auto B = random_vec(K * N, 16);
    std::vector<float> out[3];
    const int saved = get_num_threads();
    for (int t = 1; t <= 3; ++t) {
      set_num_threads(t);
      out[t - 1].resize(M * N);
      sgemm_lines(ta, L, M, N, K, B.data(), N, 0.f, out[t - 1].data(), N);
    }
    set_num_threads(saved);
    EXPECT_EQ(0, std::memcmp(out[0].data(), out[1].data(), sizeof(float) * M * N));
    EXPECT_EQ(0, std::memcmp(out[0].data(), out[2].data(), sizeof(float) * M * N));
  }
}

TEST(Gemm, ImplicitLinesRejectMismatchedSizes) {
  const Scattered S = scattered(4, 2, 3, 17);
  const Lines L = S.lines();
  std::vector<float> B(64), C(64);
  EXPECT_THROW(sgemm_lines(Trans::N, L, 4, 2, 7, B.data(), 2, 0.f, C.data(), 2),
               std::invalid_argument);
  EXPECT_THROW(sgemm_lines(Trans::T, L, 5, 2, 4, B.data(), 2, 0.f, C.data(), 2),
               std::invalid_argument);
}
