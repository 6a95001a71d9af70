// Fingerprint64 and SipHash-2-4 against published values.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ember/hashing.h"

namespace ember {
namespace {

uint64_t fp(const std::string& s) { return fingerprint64(s.data(), s.size()); }

std::string repeat(const std::string& s, int k) {
  std::string out;
  for (int i = 0; i < k; ++i) out += s;
  return out;
}

TEST(Fingerprint64, EveryLengthBranch) {
  EXPECT_EQ(fp("test"), 8581389452482819506ULL);                      // 4 bytes
  EXPECT_EQ(fp(")D<l91"), 6440615040757739207ULL);                    // 6
  EXPECT_EQ(fp("5C $WnO2K@:(4#h"), 2463546464490189ULL);              // 15
  EXPECT_EQ(fp("!@#$%^&*():=-_][\\|/?.,<> "), 11772040268694734364ULL);  // 25
  EXPECT_EQ(fp(repeat("test", 8)), 14250503356343785354ULL);          // 32
  EXPECT_EQ(fp("7.b^/n=oR_w(vLN?c?xN<5t$p8HY2!s:U"), 2506644862971557451ULL);  // 33
  EXPECT_EQ(fp("F7479877-4690-4A44-AFC9-8FE987EA512F:some_other_id"),
            6862335115798125349ULL);                                  // 50
  EXPECT_EQ(fp(repeat("test", 64)), 3500507768004279527ULL);          // 256
}

TEST(Fingerprint64, KerasHashingBuckets) {
  // keras.layers.Hashing(num_bins=3) on "A".."E" gives [1, 0, 1, 1, 2] (one byte each);
  // num_bins=2 on these words gives [0, 0, 1, 0, 0].
  std::vector<int64_t> out(5);
  hash_buckets({"A", "B", "C", "D", "E"}, 3, false, 0, 0, out.data());
  EXPECT_EQ(out, (std::vector<int64_t>{1, 0, 1, 1, 2}));
  hash_buckets({"omar", "stringer", "marlo", "wire", "skywalker"}, 2, false, 0, 0, out.data());
  EXPECT_EQ(out, (std::vector<int64_t>{0, 0, 1, 0, 0}));
}

TEST(SipHash24, ReferenceVectorAndKerasSalt) {
  // The SipHash paper's vector: key 00..0f, message 00..0e.
  std::string msg;
  for (int i = 0; i < 15; ++i) msg.push_back(static_cast<char>(i));
  EXPECT_EQ(siphash24(0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL, msg.data(), msg.size()),
            0xa129ca6149be45e5ULL);
  std::vector<int64_t> out(5);
  hash_buckets({"A", "B", "C", "D", "E"}, 3, true, 133, 137, out.data());
  EXPECT_EQ(out, (std::vector<int64_t>{1, 2, 1, 0, 2}));
  hash_buckets({"A", "B", "C", "D", "E"}, 3, true, 133, 133, out.data());
  EXPECT_EQ(out, (std::vector<int64_t>{0, 0, 2, 1, 0}));
}

}  // namespace
}  // namespace ember
