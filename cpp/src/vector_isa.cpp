// vector_isa.cpp: which vector family the loops outside the GEMM run (vector_isa.h).
#include "ember/vector_isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace ember {
namespace {

VectorIsa detect() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  // libgcc's CPU model counts AVX and AVX-512 only where XGETBV shows the OS saves
  // their registers.
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return VectorIsa::Avx512;
  if (__builtin_cpu_supports("avx2")) return VectorIsa::Avx2;
#endif
  return VectorIsa::Generic;
}

// EMBER_VECTOR_ISA forces a family the CPU has; unset, unknown or wider than the CPU
// leaves the widest (as EMBER_GEMM_KERNEL does for the GEMM).
VectorIsa from_env(VectorIsa best) {
  const char* v = std::getenv("EMBER_VECTOR_ISA");
  if (!v) return best;
  if (!std::strcmp(v, "generic")) return VectorIsa::Generic;
  if (!std::strcmp(v, "avx2") && best >= VectorIsa::Avx2) return VectorIsa::Avx2;
  return best;
}

std::atomic<int>& running() {
  static std::atomic<int> isa{static_cast<int>(from_env(best_vector_isa()))};
  return isa;
}

}  // namespace

VectorIsa best_vector_isa() {
  static const VectorIsa best = detect();
  return best;
}

VectorIsa vector_isa() {
  return static_cast<VectorIsa>(running().load(std::memory_order_relaxed));
}

void set_vector_isa(VectorIsa isa) {
  if (isa < VectorIsa::Generic || isa > best_vector_isa())
    throw std::invalid_argument(std::string("set_vector_isa: this CPU runs at most ") +
                                vector_isa_name(best_vector_isa()) + ". Received: " +
                                vector_isa_name(isa));
  running().store(static_cast<int>(isa), std::memory_order_relaxed);
}

const char* vector_isa_name(VectorIsa isa) {
  switch (isa) {
    case VectorIsa::Avx512: return "avx512";
    case VectorIsa::Avx2: return "avx2";
    case VectorIsa::Generic: return "generic";
  }
  return "unknown";
}

}  // namespace ember
