// hashing.cpp: Fingerprint64 and SipHash-2-4, written from their definitions. Both
// read the bytes as little-endian words, whatever the machine's byte order.
#include "ember/hashing.h"

#include <stdexcept>
#include <utility>

namespace ember {
namespace {

constexpr uint64_t kP0 = 0xc3a5c85c97cb3127ULL;
constexpr uint64_t kP1 = 0xb492b66fbe98f273ULL;
constexpr uint64_t kP2 = 0x9ae16a3b2f90404fULL;

inline uint64_t load(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
inline uint64_t w64(const char* p) { return load(p, 8); }
inline uint64_t w32(const char* p) { return load(p, 4); }
inline uint64_t ror(uint64_t v, int r) { return r == 0 ? v : (v >> r) | (v << (64 - r)); }
inline uint64_t shift_mix(uint64_t v) { return v ^ (v >> 47); }

// Two words folded into one with multiplier m.
inline uint64_t fold(uint64_t u, uint64_t v, uint64_t m) {
  uint64_t a = (u ^ v) * m;
  a ^= a >> 47;
  uint64_t b = (v ^ a) * m;
  b ^= b >> 47;
  return b * m;
}

uint64_t up_to_16(const char* s, size_t n) {
  const uint64_t m = kP2 + n * 2;
  if (n >= 8) {
    const uint64_t a = w64(s) + kP2, b = w64(s + n - 8);
    return fold(ror(b, 37) * m + a, (ror(a, 25) + b) * m, m);
  }
  if (n >= 4) return fold(n + (w32(s) << 3), w32(s + n - 4), m);
  if (n == 0) return kP2;
  const uint32_t first = static_cast<unsigned char>(s[0]);
  const uint32_t middle = static_cast<unsigned char>(s[n >> 1]);
  const uint32_t last = static_cast<unsigned char>(s[n - 1]);
  const uint32_t y = first + (middle << 8), z = static_cast<uint32_t>(n) + (last << 2);
  return shift_mix(y * kP2 ^ z * kP0) * kP2;
}

uint64_t up_to_32(const char* s, size_t n) {
  const uint64_t m = kP2 + n * 2;
  const uint64_t a = w64(s) * kP1, b = w64(s + 8);
  const uint64_t c = w64(s + n - 8) * m, d = w64(s + n - 16) * kP2;
  return fold(ror(a + b, 43) + ror(c, 30) + d, a + ror(b + kP2, 18) + c, m);
}

uint64_t up_to_64(const char* s, size_t n) {
  const uint64_t m = kP2 + n * 2;
  const uint64_t a = w64(s) * kP2, b = w64(s + 8);
  const uint64_t c = w64(s + n - 8) * m, d = w64(s + n - 16) * kP2;
  const uint64_t y = ror(a + b, 43) + ror(c, 30) + d;
  const uint64_t z = fold(y, a + ror(b + kP2, 18) + c, m);
  const uint64_t e = w64(s + 16) * m, f = w64(s + 24);
  const uint64_t g = (y + w64(s + n - 32)) * m, h = (z + w64(s + n - 24)) * m;
  return fold(ror(e + f, 43) + ror(g, 30) + h, e + ror(f + a, 18) + g, m);
}

// The 32 bytes at s mixed into the pair (a, b).
std::pair<uint64_t, uint64_t> mix32(const char* s, uint64_t a, uint64_t b) {
  const uint64_t w = w64(s), x = w64(s + 8), y = w64(s + 16), z = w64(s + 24);
  a += w;
  b = ror(b + a + z, 21);
  const uint64_t c = a;
  a += x;
  a += y;
  b += ror(a, 44);
  return {a + z, b + c};
}

uint64_t longer(const char* s, size_t n) {
  constexpr uint64_t seed = 81;
  uint64_t x = seed, y = seed * kP1 + 113, z = shift_mix(y * kP2 + 113) * kP2;
  std::pair<uint64_t, uint64_t> v{0, 0}, w{0, 0};
  x = x * kP2 + w64(s);
  const char* end = s + ((n - 1) / 64) * 64;
  const char* last64 = end + ((n - 1) & 63) - 63;
  auto round = [&](const char* p, uint64_t m, uint64_t wmul, uint64_t vmul) {
    x = ror(x + y + v.first + w64(p + 8), 37) * m;
    y = ror(y + v.second + w64(p + 48), 42) * m;
    x ^= w.second * wmul;
    y += v.first * vmul + w64(p + 40);
    z = ror(z + w.first, 33) * m;
    v = mix32(p, v.second * m, x + w.first);
    w = mix32(p + 32, z + w.second, y + w64(p + 16));
    std::swap(z, x);
  };
  for (const char* p = s; p != end; p += 64) round(p, kP1, 1, 1);
  const uint64_t m = kP1 + ((z & 0xff) << 1);
  w.first += (n - 1) & 63;
  v.first += w.first;
  w.first += v.first;
  round(last64, m, 9, 9);
  return fold(fold(v.first, w.first, m) + shift_mix(y) * kP0 + z,
              fold(v.second, w.second, m) + x, m);
}

inline uint64_t rol(uint64_t v, int r) { return (v << r) | (v >> (64 - r)); }

}  // namespace

uint64_t fingerprint64(const char* s, size_t n) {
  if (n <= 16) return up_to_16(s, n);
  if (n <= 32) return up_to_32(s, n);
  if (n <= 64) return up_to_64(s, n);
  return longer(s, n);
}

uint64_t siphash24(uint64_t k0, uint64_t k1, const char* s, size_t n) {
  uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
  auto rounds = [&](int count) {
    for (int i = 0; i < count; ++i) {
      v0 += v1; v1 = rol(v1, 13); v1 ^= v0; v0 = rol(v0, 32);
      v2 += v3; v3 = rol(v3, 16); v3 ^= v2;
      v0 += v3; v3 = rol(v3, 21); v3 ^= v0;
      v2 += v1; v1 = rol(v1, 17); v1 ^= v2; v2 = rol(v2, 32);
    }
  };
  auto absorb = [&](uint64_t m) {
    v3 ^= m;
    rounds(2);
    v0 ^= m;
  };
  const size_t whole = n - n % 8;
  for (size_t i = 0; i < whole; i += 8) absorb(w64(s + i));
  absorb((static_cast<uint64_t>(n & 0xff) << 56) | load(s + whole, static_cast<int>(n % 8)));
  v2 ^= 0xff;
  rounds(4);
  return v0 ^ v1 ^ v2 ^ v3;
}

void hash_buckets(const std::vector<std::string>& strings, int64_t bins, bool salted,
                  uint64_t k0, uint64_t k1, int64_t* out) {
  if (bins < 1) throw std::invalid_argument("hash_buckets: bins must be >= 1");
  for (size_t i = 0; i < strings.size(); ++i) {
    const std::string& t = strings[i];
    const uint64_t h = salted ? siphash24(k0, k1, t.data(), t.size())
                              : fingerprint64(t.data(), t.size());
    out[i] = static_cast<int64_t>(h % static_cast<uint64_t>(bins));
  }
}

}  // namespace ember
