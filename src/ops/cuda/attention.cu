// Causal attention over a sequence's KV cache (f16, Q8_0 or Q4_0), and the cache writes.
//
// attend: one block per (query token, head), its kSplit warps taking every kSplit-th position
// (split-K: decode has one query token, so the positions are where the parallelism is). Lane l
// holds a run of head_dim / 32 consecutive dims (4l .. 4l + 3 at head_dim 128; dims l, l + 32,
// ... for head sizes that are not 64, 128 or 256) of the query, the running output and the
// keys/values it reads, a few wide loads a position (kv_values.cuh, KvRun);
// each warp runs an online softmax (running max and sum) over its positions, kBatch of them
// loaded at a time, and the block merges the warps' partial results at the end. Long contexts
// split further, over `chunks` blocks a head (flash-decoding): each block takes a stretch of
// the positions, and the last one to finish merges the blocks' results.
//
// attend_prefill: many query tokens of one sequence. One block per (kv head, group of query
// tokens): the block's 64 query rows (its tokens x the query heads sharing the kv head) walk the
// keys and values together, 32 positions at a time staged in shared memory, so each is read
// once per block instead of once per (token, head). A warp takes 8 rows (a token's query heads
// where 8 share a kv head); lane j scores position j of a tile for all of them (a dot over the
// head from shared memory: one key read serves 8 rows, no shuffles), the warp keeps an online
// softmax per row, and lane l accumulates dims l, l + 32, ... of each row's output (one value
// read serves 8 rows).
#include <cuda_fp16.h>

#include <cfloat>
#include <type_traits>

#include "ops/cuda/attention.h"
#include "ops/cuda/attention_mma.h"
#include "ops/cuda/kv_values.cuh"
#include "ops/cuda/launch.cuh"
#include "ops/cuda/last_block.cuh"
#include "ops/cuda/quantize_block.cuh"
#include "ops/cuda/rope.cuh"
#include "ops/cuda/warp.cuh"

namespace moe::cuda {
namespace {

constexpr int kMaxDimsPerLane = 8;  // head_dim <= 256
constexpr int kSplit = 8, kBatch = 4;

// kChunked: split over a.chunks blocks a head (else one block a head: no merge between blocks).
// kType: a.kv_type. kDims: head_dim / 32 (the values of a head a lane holds), or 0 for any
// head_dim up to 256, where each value is under a branch.
template <bool kChunked, KvType kType, int kDims>
__global__ void __launch_bounds__(32 * kSplit) attend_kernel(DecodeAttention a) {
  constexpr int kLaneValues = kDims ? kDims : kMaxDimsPerLane;
  wait_for_previous_kernels();
  allow_next_kernel();
  const int chunks = kChunked ? a.chunks : 1;
  const int64_t task = blockIdx.x / chunks;  // (token, head)
  const int chunk = int(blockIdx.x % chunks);
  const int n_head = a.n_head, n_head_kv = a.n_head_kv, head_dim = kDims ? 32 * kDims : a.head_dim;
  const int t = int(task / n_head), h = int(task % n_head), lane = threadIdx.x, warp = threadIdx.y;
  const int group = n_head / n_head_kv, kv_head = h / group, kv_dim = n_head_kv * head_dim;
  const int per_lane = kDims ? kDims : head_dim / 32;
  const int pos_t = a.pos[t];
  const FreshKv& f = a.fresh;
  // With fresh q/k/v: this block's query, and its kv head's key and value as the cache keeps
  // them (rounded to its type), made here (warps 0-2) and taken from shared memory for the
  // current position (other blocks of the head may not have stored them yet). The first block
  // of each kv head stores them.
  __shared__ float q_fresh[kMaxRopeHeadDim], k_fresh[kMaxRopeHeadDim], scratch[2][kMaxRopeHeadDim];
  __shared__ float k_kept[kMaxRopeHeadDim], v_kept[kMaxRopeHeadDim];
  __shared__ float2 rotation[kMaxRopeHeadDim / 2];
  if (f.q) {
    // Warps 0 and 1 norm the query and the key while warp 2 keeps the value and the others
    // compute the rotation table (the double sine and cosine: the longest chain here), then
    // warps 0 and 1 rotate.
    static_assert(kSplit >= 4);
    const bool stores = h % group == 0 && chunk == 0;
    const int64_t at = int64_t(pos_t) * kv_dim + int64_t(kv_head) * head_dim;  // the head's first value
    if (warp == 0) {
      rms_norm_head(f.q + (int64_t(t) * n_head + h) * f.q_stride, f.q_norm, f.eps, head_dim, scratch[0]);
    } else if (warp == 1) {
      rms_norm_head(f.k + (int64_t(t) * n_head_kv + kv_head) * head_dim, f.k_norm, f.eps, head_dim, scratch[1]);
    } else if (warp == 2) {
      for (int i = lane; i < head_dim; i += 32) {
        const float v = f.v[(int64_t(t) * n_head_kv + kv_head) * head_dim + i];
        v_kept[i] = kv_keep_lanes<kType>(stores ? f.v_cache : nullptr, at + i - lane, v);
      }
    } else {
      fill_rotations(f.freq, pos_t, f.n_rot, rotation, (warp - 3) * 32 + lane, (kSplit - 3) * 32);
    }
    __syncthreads();
    if (warp == 0) {
      rotate_head(scratch[0], head_dim, f.n_rot, rotation, q_fresh);
    } else if (warp == 1) {
      rotate_head(scratch[1], head_dim, f.n_rot, rotation, k_fresh);
      for (int i = lane; i < head_dim; i += 32) {
        k_kept[i] = kv_keep_lanes<kType>(stores ? f.k_cache : nullptr, at + i - lane, k_fresh[i]);
      }
    }
    __syncthreads();
  }
  // The dims a lane holds while walking the positions: kDims consecutive ones (a KvRun: few
  // wide loads a position), or for other head sizes dims lane, lane + 32, ... (a load a value).
  auto dim = [&](int i) { return kDims ? kDims * lane + i : lane + 32 * i; };
  const float* qh = f.q ? q_fresh : a.q + (int64_t(t) * n_head + h) * head_dim;
  float qv[kLaneValues], acc[kLaneValues];
#pragma unroll
  for (int i = 0; i < kLaneValues; ++i) {
    qv[i] = i < per_lane ? qh[dim(i)] : 0.0f;
    acc[i] = 0.0f;
  }
  float max = -FLT_MAX, sum = 0.0f;
  // This block's share of the positions [0, pos_t]: all of them, or its chunk's.
  const int64_t visible = pos_t + 1;
  const int begin = int(visible * chunk / chunks), end = int(visible * (chunk + 1) / chunks);
  // kBatch positions a warp at a time: their keys and values are loaded together (one memory
  // latency, not two a position), then taken in order with the same arithmetic. The loads are
  // one stretch of code without branches, so that all of them go out before the first value is
  // used: a position past the end loads the last one again (its score unused), and the current
  // position loads the cache too (maybe not stored yet) and takes the fresh values instead where
  // they are used.
  for (int p0 = begin + warp; p0 < end; p0 += kSplit * kBatch) {
    float kb[kBatch][kLaneValues], vb[kBatch][kLaneValues];
    if constexpr (kDims > 0) {
      KvRun<kType, kDims> kr[kBatch], vr[kBatch];
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int64_t first = int64_t(min(p0 + b * kSplit, end - 1)) * kv_dim + kv_head * head_dim + dim(0);
        kr[b].load(a.k_cache, first);
        vr[b].load(a.v_cache, first);
      }
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
#pragma unroll
        for (int i = 0; i < kDims; ++i) kb[b][i] = kr[b].value(i), vb[b][i] = vr[b].value(i);
      }
    } else {
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int64_t head_at = int64_t(min(p0 + b * kSplit, end - 1)) * kv_dim + kv_head * head_dim;
#pragma unroll
        for (int i = 0; i < kLaneValues; ++i) {
          if (i < per_lane) {
            kb[b][i] = kv_value<kType>(a.k_cache, head_at + dim(i));
            vb[b][i] = kv_value<kType>(a.v_cache, head_at + dim(i));
          }
        }
      }
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      if (p0 + b * kSplit >= end) break;
      if (f.q && p0 + b * kSplit == pos_t) {
#pragma unroll
        for (int i = 0; i < kLaneValues; ++i) {
          if (i < per_lane) kb[b][i] = k_kept[dim(i)], vb[b][i] = v_kept[dim(i)];
        }
      }
      float s = 0.0f;
#pragma unroll
      for (int i = 0; i < kLaneValues; ++i) {
        if (i < per_lane) s += qv[i] * kb[b][i];
      }
      s = warp_sum(s);
      s *= a.scale;
      const float new_max = fmaxf(max, s), correction = expf(max - new_max), weight = expf(s - new_max);
#pragma unroll
      for (int i = 0; i < kLaneValues; ++i) {
        if (i < per_lane) acc[i] = acc[i] * correction + weight * vb[b][i];
      }
      sum = sum * correction + weight;
      max = new_max;
    }
  }
  // Merge: every warp's output rescaled to the largest running max. From here lane l holds
  // dims l, l + 32, ... (the layout of the output's Q8_0 blocks): shared memory transposes.
  __shared__ float warp_max[kSplit], warp_sum[kSplit], warp_acc[kSplit][32 * kLaneValues];
  if (lane == 0) warp_max[warp] = max, warp_sum[warp] = sum;
#pragma unroll
  for (int i = 0; i < kLaneValues; ++i) {
    if (i < per_lane) warp_acc[warp][dim(i)] = acc[i];
  }
  __syncthreads();
  float top = -FLT_MAX, total = 0.0f, o[kLaneValues];  // warp 0: the block's result, unnormalized
  if (warp == 0) {
#pragma unroll
    for (int w = 0; w < kSplit; ++w) top = fmaxf(top, warp_max[w]);
    float scale_of[kSplit];
#pragma unroll
    for (int w = 0; w < kSplit; ++w) {
      scale_of[w] = expf(warp_max[w] - top);
      total += warp_sum[w] * scale_of[w];
    }
#pragma unroll
    for (int i = 0; i < kLaneValues; ++i) {
      o[i] = 0.0f;
      if (i >= per_lane) continue;
#pragma unroll
      for (int w = 0; w < kSplit; ++w) o[i] += warp_acc[w][lane + 32 * i] * scale_of[w];
    }
  }
  if constexpr (kChunked) {
    // Split over blocks: each block leaves its result; the last of the head's blocks merges
    // them, in chunk order, as the warps' were merged.
    float* mine = a.partials + (task * a.chunks + chunk) * (head_dim + 2);
    if (warp == 0) {
      if (lane == 0) mine[0] = top, mine[1] = total;
#pragma unroll
      for (int i = 0; i < kLaneValues; ++i) {
        if (i < per_lane) mine[2 + lane + 32 * i] = o[i];
      }
    }
    if (!last_to_arrive(a.counters + task, unsigned(a.chunks))) return;
    if (warp != 0) return;
    const float* all = a.partials + task * a.chunks * (head_dim + 2);
    top = -FLT_MAX, total = 0.0f;
    for (int c = 0; c < a.chunks; ++c) top = fmaxf(top, __ldcg(all + c * (head_dim + 2)));
#pragma unroll
    for (int i = 0; i < kLaneValues; ++i) o[i] = 0.0f;
    for (int c = 0; c < a.chunks; ++c) {
      const float* part = all + c * (head_dim + 2);
      const float scale = expf(__ldcg(part) - top);
      total += __ldcg(part + 1) * scale;
#pragma unroll
      for (int i = 0; i < kLaneValues; ++i) {
        if (i < per_lane) o[i] += __ldcg(part + 2 + lane + 32 * i) * scale;
      }
    }
  }
  if (warp != 0) return;
  // The head's output, gated (sigmoid_mul's expression) and quantized to Q8_0 here where asked:
  // a block of 32 dims is dim i of the 32 lanes, the lanes of quantize_block_q8_0.
  const int64_t at = (int64_t(t) * n_head + h) * head_dim, gate_stride = a.gate_stride ? a.gate_stride : head_dim;
#pragma unroll
  for (int i = 0; i < kLaneValues; ++i) {
    if (i >= per_lane) continue;
    float v = o[i] / total;
    if (a.gate) v *= sigmoid(a.gate[(int64_t(t) * n_head + h) * gate_stride + lane + 32 * i]);
    if (a.out) a.out[at + lane + 32 * i] = v;
    if (a.qs) quantize_lanes_q8_0(v, a.qs + at + 32 * i, a.scales + (at + 32 * i) / 32);
  }
}

template <bool kChunked, KvType kType>
void launch_decode(const DecodeAttention& a, unsigned blocks, cudaStream_t stream) {
  const dim3 block(32, kSplit);
  switch (a.head_dim) {
    case 64: launch(attend_kernel<kChunked, kType, 2>, blocks, block, 0, stream, a); break;
    case 128: launch(attend_kernel<kChunked, kType, 4>, blocks, block, 0, stream, a); break;
    case 256: launch(attend_kernel<kChunked, kType, 8>, blocks, block, 0, stream, a); break;
    default: launch(attend_kernel<kChunked, kType, 0>, blocks, block, 0, stream, a); break;
  }
}

constexpr int kPrefillRows = 64, kPrefillTile = 32, kPrefillWarps = 8;
constexpr int kRowsPerWarp = kPrefillRows / kPrefillWarps;

// A tile of kPrefillTile positions' keys and values in shared memory, as the cache keeps them:
// f16 values, or a quantized cache's integers as int8 (Q4_0's levels less 8) with their blocks'
// scales beside them (dequantized as they are read, so the tile takes half the space; a
// consumer GPU's 99 KiB must hold it with the query rows at head_dim 256). Key rows are padded so that lanes reading the same dim of
// different rows fall in different banks.
template <int kDims, KvType kType>
struct PrefillTile {
  static constexpr int kHeadDim = 32 * kDims;
  using Value = std::conditional_t<kType == KvType::F16, __half, int8_t>;
  static constexpr int kKeyPitch = kHeadDim + (kType == KvType::F16 ? 2 : 4);
  static constexpr size_t kBytes =
      size_t(kPrefillTile) * ((kKeyPitch + kHeadDim) * sizeof(Value) + (kType == KvType::F16 ? 0 : 2 * kDims * 4));

  Value* keys;    // [kPrefillTile][kKeyPitch]
  Value* values;  // [kPrefillTile][kHeadDim]
  float* scales;  // quantized: [kPrefillTile][kDims] of the keys, then of the values

  __device__ explicit PrefillTile(void* at)
      : keys(static_cast<Value*>(at)),
        values(keys + kPrefillTile * kKeyPitch),
        scales(reinterpret_cast<float*>(values + kPrefillTile * kHeadDim)) {}

  // The block loads positions p0 .. p0 + kPrefillTile - 1 of kv head `kv_head` (zeros past last).
  __device__ void load(const void* k, const void* v, int p0, int last, int kv_head, int kv_dim, int tid) {
    for (int i = tid; i < kPrefillTile * kHeadDim / 2; i += 32 * kPrefillWarps) {
      const int j = i / (kHeadDim / 2), d = 2 * (i % (kHeadDim / 2)), p = p0 + j;
      const int64_t at = int64_t(p) * kv_dim + kv_head * kHeadDim + d;
      if constexpr (kType == KvType::F16) {
        const __half2 zero = __float2half2_rn(0.0f);
        *reinterpret_cast<__half2*>(keys + j * kKeyPitch + d) = p <= last ? *reinterpret_cast<const __half2*>(
                                                                                  static_cast<const __half*>(k) + at)
                                                                            : zero;
        *reinterpret_cast<__half2*>(values + j * kHeadDim + d) =
            p <= last ? *reinterpret_cast<const __half2*>(static_cast<const __half*>(v) + at) : zero;
      } else {
        const int64_t block = at >> 5;
        const int in_block = int(at & 31);
        const auto* kb = static_cast<const uint8_t*>(k) + block * kKvBlockBytes<kType>;
        const auto* vb = static_cast<const uint8_t*>(v) + block * kKvBlockBytes<kType>;
        const bool in = p <= last;
        keys[j * kKeyPitch + d] = in ? int8_t(kv_block_int<kType>(kb, in_block)) : int8_t(0);
        keys[j * kKeyPitch + d + 1] = in ? int8_t(kv_block_int<kType>(kb, in_block + 1)) : int8_t(0);
        values[j * kHeadDim + d] = in ? int8_t(kv_block_int<kType>(vb, in_block)) : int8_t(0);
        values[j * kHeadDim + d + 1] = in ? int8_t(kv_block_int<kType>(vb, in_block + 1)) : int8_t(0);
        if (in_block == 0) {
          scales[j * kDims + d / 32] = in ? kv_block_scale(kb) : 0.0f;
          scales[(kPrefillTile + j) * kDims + d / 32] = in ? kv_block_scale(vb) : 0.0f;
        }
      }
    }
  }
  // Dims d and d + 1 (d even) of position j's key.
  __device__ float2 key_pair(int j, int d) const {
    if constexpr (kType == KvType::F16) {
      return __half22float2(*reinterpret_cast<const __half2*>(keys + j * kKeyPitch + d));
    } else {
      const float sc = scales[j * kDims + d / 32];
      return {sc * float(keys[j * kKeyPitch + d]), sc * float(keys[j * kKeyPitch + d + 1])};
    }
  }
  // Dim 32 i + lane of position j's value.
  __device__ float value(int j, int i, int lane) const {
    if constexpr (kType == KvType::F16) {
      return __half2float(values[j * kHeadDim + lane + 32 * i]);
    } else {
      return scales[(kPrefillTile + j) * kDims + i] * float(values[j * kHeadDim + lane + 32 * i]);
    }
  }
};

template <int kDims, KvType kType>  // head_dim / 32, the cache's type
__global__ void __launch_bounds__(32 * kPrefillWarps)
    attend_prefill_kernel(const float* __restrict__ q, const void* __restrict__ k, const void* __restrict__ v,
                          const int32_t* __restrict__ pos, int n, int n_head, int n_head_kv, float scale,
                          float* __restrict__ out) {
  wait_for_previous_kernels();
  allow_next_kernel();
  constexpr int kHeadDim = 32 * kDims;
  extern __shared__ __align__(16) float q_rows[];  // [kPrefillRows][kHeadDim], then the tile
  PrefillTile<kDims, kType> tile(q_rows + kPrefillRows * kHeadDim);
  const int group = n_head / n_head_kv, tokens = kPrefillRows / group;
  const int kv_head = blockIdx.y, t0 = blockIdx.x * tokens, lane = threadIdx.x, warp = threadIdx.y;
  const int tid = warp * 32 + lane, kv_dim = n_head_kv * kHeadDim;
  // Row r: token t0 + r / group, query head kv_head * group + r % group.
  auto token_of = [&](int r) { return t0 + r / group; };
  int last = -1;  // the block's furthest visible position
  for (int r = 0; r < kPrefillRows; r += group) {
    if (token_of(r) < n) last = max(last, pos[token_of(r)]);
  }
  for (int i = tid; i < kPrefillRows * kHeadDim; i += 32 * kPrefillWarps) {
    const int r = i / kHeadDim, t = token_of(r);
    q_rows[i] = t < n ? q[(int64_t(t) * n_head + kv_head * group + r % group) * kHeadDim + i % kHeadDim] : 0.0f;
  }
  float m[kRowsPerWarp], l[kRowsPerWarp], o[kRowsPerWarp][kDims];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    m[rr] = -FLT_MAX, l[rr] = 0.0f;
#pragma unroll
    for (int i = 0; i < kDims; ++i) o[rr][i] = 0.0f;
  }
  for (int p0 = 0; p0 <= last; p0 += kPrefillTile) {
    __syncthreads();  // the previous tile is read by all (and the query rows are in)
    tile.load(k, v, p0, last, kv_head, kv_dim, tid);
    __syncthreads();
    // Lane j scores position p0 + j for each of the warp's rows: one key read serves them all.
    const int r0 = warp * kRowsPerWarp;
    int visible[kRowsPerWarp];
    bool any = false;
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      const int t = token_of(r0 + rr);
      visible[rr] = t < n ? pos[t] : -1;
      any |= visible[rr] >= p0;
    }
    if (!any) continue;  // warp-uniform
    float dot[kRowsPerWarp] = {};
#pragma unroll 4
    for (int d = 0; d < kHeadDim; d += 2) {
      const float2 kv = tile.key_pair(lane, d);
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; ++rr) {
        const float2 qv = *reinterpret_cast<const float2*>(q_rows + (r0 + rr) * kHeadDim + d);
        dot[rr] += qv.x * kv.x + qv.y * kv.y;
      }
    }
    float weight[kRowsPerWarp];
    int count = 0;  // positions of the tile some row of the warp sees
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      const bool seen = p0 + lane <= visible[rr];
      const float s = seen ? dot[rr] * scale : -FLT_MAX;
      const float tile_max = warp_max(s);
      if (visible[rr] < p0) {  // nothing to see in this tile: the row's state stays
        weight[rr] = 0.0f;
        continue;
      }
      const float new_max = fmaxf(m[rr], tile_max), correction = expf(m[rr] - new_max);
      weight[rr] = seen ? expf(s - new_max) : 0.0f;
      l[rr] = l[rr] * correction + warp_sum(weight[rr]);
      m[rr] = new_max;
#pragma unroll
      for (int i = 0; i < kDims; ++i) o[rr][i] *= correction;
      count = max(count, min(kPrefillTile, visible[rr] - p0 + 1));
    }
    // One value read serves every row (rows that do not see position j have weight 0 there).
    for (int j = 0; j < count; ++j) {
      float vj[kDims];
#pragma unroll
      for (int i = 0; i < kDims; ++i) vj[i] = tile.value(j, i, lane);
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; ++rr) {
        const float wj = __shfl_sync(0xFFFFFFFFu, weight[rr], j);
#pragma unroll
        for (int i = 0; i < kDims; ++i) o[rr][i] += wj * vj[i];
      }
    }
  }
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int r = warp * kRowsPerWarp + rr, t = token_of(r);
    if (t >= n) continue;
    float* oh = out + (int64_t(t) * n_head + kv_head * group + r % group) * kHeadDim;
#pragma unroll
    for (int i = 0; i < kDims; ++i) oh[lane + 32 * i] = o[rr][i] / l[rr];
  }
}

template <int kDims, KvType kType>
cudaError_t launch_prefill(const float* q, const void* k, const void* v, const int32_t* pos, int n, int n_head,
                           int n_head_kv, float scale, float* out, cudaStream_t stream) {
  const int bytes = int(kPrefillRows * 32 * kDims * 4 + PrefillTile<kDims, kType>::kBytes);
  const auto kernel = attend_prefill_kernel<kDims, kType>;
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e != cudaSuccess) return e;
  const int tokens = kPrefillRows / (n_head / n_head_kv);
  const dim3 grid(unsigned((n + tokens - 1) / tokens), unsigned(n_head_kv)), block(32, kPrefillWarps);
  return launch(kernel, grid, block, size_t(bytes), stream, q, k, v, pos, n, n_head, n_head_kv, scale, out);
}

template <KvType kType>
cudaError_t prefill_for_head_dim(const float* q, const void* k, const void* v, const int32_t* pos, int n, int n_head,
                                 int n_head_kv, int head_dim, float scale, float* out, cudaStream_t stream) {
  switch (head_dim) {
    case 64: return launch_prefill<2, kType>(q, k, v, pos, n, n_head, n_head_kv, scale, out, stream);
    case 128: return launch_prefill<4, kType>(q, k, v, pos, n, n_head, n_head_kv, scale, out, stream);
    case 256: return launch_prefill<8, kType>(q, k, v, pos, n, n_head, n_head_kv, scale, out, stream);
    default: return cudaErrorNotSupported;  // the caller falls back to the decode kernel
  }
}

// One warp per 32 values (kv_dim is a multiple of 32): value `lane` of them in each lane.
template <KvType kType>
__global__ void store_kv_kernel(const float* __restrict__ k, const float* __restrict__ v, int n, int kv_dim,
                                const int32_t* __restrict__ pos, void* kc, void* vc) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t i = (int64_t(blockIdx.x) * blockDim.y + threadIdx.y) * 32 + threadIdx.x;
  if (i >= int64_t(n) * kv_dim) return;  // whole warps
  const int t = int(i / kv_dim), d = int(i % kv_dim);
  const int64_t at = int64_t(pos[t]) * kv_dim + d - threadIdx.x;
  kv_keep_lanes<kType>(kc, at, k[i]);
  kv_keep_lanes<kType>(vc, at, v[i]);
}

}  // namespace

cudaError_t attend(const float* q, KvType type, const void* k, const void* v, const int32_t* pos, int n, int n_head,
                   int n_head_kv, int head_dim, float scale, float* out, cudaStream_t stream, PrefillKernel kernel) {
  if (head_dim % 32 != 0 || head_dim > 32 * kMaxDimsPerLane || n_head % n_head_kv != 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const int group = n_head / n_head_kv;
  if (n > 1 && kernel != PrefillKernel::CudaCores) {
    const cudaError_t e = attend_prefill_mma(q, type, k, v, pos, n, n_head, n_head_kv, head_dim, scale, out, stream);
    if (e != cudaErrorNotSupported) return e;
  }
  if (n > 1 && kPrefillRows % group == 0) {  // prefill: the tokens of a block share the keys they read
    const cudaError_t e = with_kv_type(type, [&](auto t) {
      return prefill_for_head_dim<decltype(t)::value>(q, k, v, pos, n, n_head, n_head_kv, head_dim, scale, out, stream);
    });
    if (e != cudaErrorNotSupported) return e;
  }
  return attend_decode({.q = q, .kv_type = type, .k_cache = k, .v_cache = v, .pos = pos, .n = n, .n_head = n_head,
                        .n_head_kv = n_head_kv, .head_dim = head_dim, .scale = scale, .out = out, .fresh = {}},
                       stream);
}

cudaError_t attend_decode(const DecodeAttention& a, cudaStream_t stream) {
  if (a.head_dim % 32 != 0 || a.head_dim > 32 * kMaxDimsPerLane || a.n_head_kv <= 0 || a.n_head % a.n_head_kv != 0) {
    return cudaErrorInvalidValue;
  }
  if ((a.qs == nullptr) != (a.scales == nullptr)) return cudaErrorInvalidValue;
  const FreshKv& f = a.fresh;
  if (f.q && (a.n != 1 || !f.k || !f.v || !f.k_cache || !f.v_cache || f.n_rot > a.head_dim || f.n_rot % 2 != 0)) {
    return cudaErrorInvalidValue;
  }
  if (a.chunks < 1 || (a.chunks > 1 && (a.partials == nullptr || a.counters == nullptr))) return cudaErrorInvalidValue;
  if (a.n == 0) return cudaSuccess;
  with_kv_type(a.kv_type, [&](auto t) {
    if (a.chunks > 1) {
      launch_decode<true, decltype(t)::value>(a, unsigned(int64_t(a.n) * a.n_head * a.chunks), stream);
    } else {
      launch_decode<false, decltype(t)::value>(a, unsigned(int64_t(a.n) * a.n_head), stream);
    }
  });
  return cudaGetLastError();
}

cudaError_t store_kv(const float* k, const float* v, int n, int kv_dim, const int32_t* pos, KvType type,
                     void* k_cache, void* v_cache, cudaStream_t stream) {
  if (kv_dim % 32 != 0) return cudaErrorInvalidValue;
  const int64_t warps = int64_t(n) * kv_dim / 32;
  if (warps == 0) return cudaSuccess;
  constexpr int kWarpsPerBlock = 8;
  with_kv_type(type, [&](auto t) {
    launch(store_kv_kernel<decltype(t)::value>, unsigned((warps + kWarpsPerBlock - 1) / kWarpsPerBlock), dim3(32, kWarpsPerBlock),
           0, stream, k, v, n, kv_dim, pos, k_cache, v_cache);
  });
  return cudaGetLastError();
}

}  // namespace moe::cuda
