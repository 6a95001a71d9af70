// test_gemm.cpp: sgemm against the naive reference in every form, on awkward
// shapes, for the dispatched kernel (run again under EMBER_GEMM_KERNEL=generic).
#include <gtest/gtest.h>

#include <cstring>
#include <tuple>

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

// 1, MR +- 1 (6, 4), NR +- 1 (16, 8), KC + 1 (257), primes, sizes past every block.
const Case kCases[] = {{1, 1, 1},    {1, 17, 5},   {5, 1, 3},     {7, 15, 9},   {6, 16, 256},
                       {5, 17, 257}, {3, 9, 7},    {13, 31, 37},  {97, 89, 83}, {145, 33, 513},
                       {200, 3100, 20}, {64, 10, 300}, {128, 512, 784}, {1, 512, 784},
                       {4, 33, 70},  {2, 100, 1000}, {1, 7, 3000},
                       // small M: K in several chunks, N in several tiles with a tail
                       {3, 2100, 515}, {4, 1029, 257}, {1, 2051, 4},
                       // split-K: small C, long K (conv1's weight gradient), uneven last chunk
                       {27, 32, 9000}, {5, 3, 4097}};

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
  // The packed path (NT), the split-K path (TN, small C over a long K) and the small-M
  // path (NN, K in chunks, N in tiles).
  for (auto [c, ta, tb] : {std::make_tuple(Case{301, 517, 700}, Trans::N, Trans::T),
                           std::make_tuple(Case{27, 32, 9000}, Trans::T, Trans::N),
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
