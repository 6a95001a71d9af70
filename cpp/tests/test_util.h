// test_util.h: helpers shared by the C++ tests.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace ember_test {

inline std::vector<float> random_vec(int64_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(gen);
  return v;
}

// Largest |a - b| / (1 + |b|).
template <class A, class B>
double max_rel_err(const A& a, const B& b) {
  double e = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    // NaN on one side only is the largest error (std::max would skip it).
    if (std::isnan(double(a[i])) != std::isnan(double(b[i])))
      return std::numeric_limits<double>::infinity();
    e = std::max(e, std::fabs(double(a[i]) - double(b[i])) / (1.0 + std::fabs(double(b[i]))));
  }
  return e;
}

}  // namespace ember_test
