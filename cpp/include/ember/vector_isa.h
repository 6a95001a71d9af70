// vector_isa.h: the instruction-set family of the loops outside the GEMM (activations,
// pooling, normalization, optimizer updates, Philox, ...), picked once at run time like
// the GEMM kernel, and how a loop is written once and compiled for each family.
#pragma once

namespace ember {

enum class VectorIsa { Generic = 0, Avx2 = 1, Avx512 = 2 };

// The widest family this CPU and its OS support: AVX-512 (F/BW/DQ/VL) where the OS
// saves the zmm state, else AVX2, else the baseline x86-64 (or non-x86) build.
VectorIsa best_vector_isa();

// The family running: best_vector_isa(), or the one EMBER_VECTOR_ISA names ("generic",
// "avx2" or "avx512") where the CPU has it.
VectorIsa vector_isa();

// Forces a family (tests compare them); one the CPU lacks throws std::invalid_argument.
void set_vector_isa(VectorIsa isa);

const char* vector_isa_name(VectorIsa isa);

}  // namespace ember

// A file's vector loops sit in their own file, included by ember/vector_variants.inc
// once per family, into namespaces avx512, avx2 and generic; EMBER_VECTOR_CALL(f, args)
// calls the running family's f. The library is built with -ffp-contract=off and without
// reassociation, so no variant fuses a multiply-add or reorders a sum: every variant
// computes the same bits, only more elements at a time.
#define EMBER_VECTOR_CALL(f, ...)                                                \
  (::ember::vector_isa() == ::ember::VectorIsa::Avx512 ? avx512::f(__VA_ARGS__)  \
   : ::ember::vector_isa() == ::ember::VectorIsa::Avx2 ? avx2::f(__VA_ARGS__)    \
                                                       : generic::f(__VA_ARGS__))
