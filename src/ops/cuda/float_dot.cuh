#pragma once
// The product of eight float weights with eight activations, one expression shared by every
// kernel that multiplies float rows (the one-token products, the router fused with its norm),
// so that each adds in the same order and rounds the same way.
namespace moe::cuda {

__device__ __forceinline__ float dot8(const float (&v)[8], float4 a, float4 b) {
  return v[0] * a.x + v[1] * a.y + v[2] * a.z + v[3] * a.w + v[4] * b.x + v[5] * b.y + v[6] * b.z + v[7] * b.w;
}

}  // namespace moe::cuda
