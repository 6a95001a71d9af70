// hashing.h: the string hashes Keras's Hashing layer and lookup layers bucket with
// (TensorFlow's to_hash_bucket_fast and to_hash_bucket_strong).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ember {

// FarmHash's Fingerprint64 (farmhashna::Hash64) of the bytes s[0..n).
uint64_t fingerprint64(const char* s, size_t n);

// SipHash-2-4 of the bytes s[0..n) under the 128-bit key (k0, k1).
uint64_t siphash24(uint64_t k0, uint64_t k1, const char* s, size_t n);

// out[i] = hash(strings[i]) mod bins: Fingerprint64, or SipHash-2-4 when salted.
void hash_buckets(const std::vector<std::string>& strings, int64_t bins, bool salted,
                  uint64_t k0, uint64_t k1, int64_t* out);

}  // namespace ember
