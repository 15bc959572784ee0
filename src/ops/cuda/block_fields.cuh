#pragma once
// Reading the fields of GGUF quant blocks in device code (the CPU-side layouts are in
// core/quant_blocks.h; nvcc compiles the kernels without that header's inline helpers).
#include <cuda_fp16.h>

#include <cstdint>

namespace moe::cuda {

// The f16 at p (2-byte aligned) as f32.
__device__ __forceinline__ float f16_at(const uint8_t* p) {
  return __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short*>(p)));
}

// The 4 bytes at p (2-byte aligned: the values of GGUF quant blocks) as a little-endian word.
__device__ __forceinline__ int word_at_a2(const uint8_t* p) {
  const auto* h = reinterpret_cast<const unsigned short*>(p);
  return int(unsigned(h[0]) | (unsigned(h[1]) << 16));
}

// The 6-bit scale and min of sub-block s of a Q4_K / Q5_K block: its 12 packed bytes at p
// (4-byte aligned) as three little-endian words, unpacked four sub-blocks per word.
__device__ __forceinline__ void k_scale(const uint8_t* p, int s, int& sc, int& m) {
  const auto* u = reinterpret_cast<const unsigned*>(p);
  const unsigned u0 = u[0], u1 = u[1], u2 = u[2];
  const unsigned scales = s < 4 ? u0 & 0x3F3F3F3Fu : (u2 & 0x0F0F0F0Fu) | ((u0 >> 2) & 0x30303030u);
  const unsigned mins = s < 4 ? u1 & 0x3F3F3F3Fu : ((u2 >> 4) & 0x0F0F0F0Fu) | ((u1 >> 2) & 0x30303030u);
  sc = int((scales >> (8 * (s % 4))) & 0xFF);
  m = int((mins >> (8 * (s % 4))) & 0xFF);
}

}  // namespace moe::cuda
