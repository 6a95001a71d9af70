// buffer.h: 64-byte aligned float storage owned by the engine.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace ember {

// A growable, 64-byte aligned array of T. Growing discards the contents; the
// executor sizes its buffers once per batch-size capacity, so steady state never
// reallocates. Memory is zero-initialised on allocation.
template <class T>
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(int64_t n) { resize(n); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& o) noexcept { swap(o); }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept { swap(o); return *this; }
  ~AlignedBuffer() { std::free(data_); }

  // Ensures room for n elements; reallocates (zeroed) only when n exceeds capacity.
  // Throws std::bad_alloc, keeping the old storage, when the allocation fails.
  void resize(int64_t n) {
    if (n <= cap_) { size_ = n; return; }
    if (static_cast<uint64_t>(n) > (uint64_t(1) << 62) / sizeof(T)) throw std::bad_alloc();
    std::size_t bytes = (static_cast<std::size_t>(n) * sizeof(T) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, bytes ? bytes : 64);
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, bytes);
    std::free(data_);
    data_ = static_cast<T*>(p);
    cap_ = size_ = n;
  }
  void zero() { if (size_) std::memset(data_, 0, sizeof(T) * size_); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return size_; }
  int64_t capacity() const { return cap_; }
  T& operator[](int64_t i) { return data_[i]; }
  const T& operator[](int64_t i) const { return data_[i]; }

 private:
  void swap(AlignedBuffer& o) {
    std::swap(data_, o.data_); std::swap(size_, o.size_); std::swap(cap_, o.cap_);
  }
  T* data_ = nullptr;
  int64_t size_ = 0;
  int64_t cap_ = 0;
};

using FloatBuffer = AlignedBuffer<float>;

}  // namespace ember
