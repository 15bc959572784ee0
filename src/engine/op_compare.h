#pragma once
// Two engines compared op by op: the same tokens through two models (the CPU engine and a GPU
// engine, or two builds of one), every checkpoint of the tracer (Model::set_tracer) recorded
// from both and compared in order, so that one run names the first op whose output differs by
// more than a threshold: where to look when the logits disagree.
#include <cstdint>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "models/model.h"

namespace moe {

struct TensorDiff {
  std::string name;  // the checkpoint (model.h), or "logits"
  int step = 0;      // the forward call: 0 the prompt, then one per decoded token
  size_t count = 0;  // values compared
  double rel_rms = 0;  // ||a - b|| / ||a|| (0 when both are zero)
  double max_abs = 0;  // the largest |a - b|
};

struct OpCompareOptions {
  int prompt_tokens = 8;  // random token ids (from seed) in one forward call
  int decode_steps = 4;   // then single tokens, each the argmax of the first model's logits
  uint32_t seed = 1;
  double threshold = 1e-3;  // a checkpoint diverges where rel_rms exceeds it
  GgmlType kv_type = GgmlType::F16;
};

struct OpCompareResult {
  std::vector<TensorDiff> diffs;  // every checkpoint of every step, in the order they came
  int first_divergent = -1;       // index in diffs of the first one above the threshold; -1: none
};

// The diff of two tensors of the same checkpoint (throws if their sizes differ).
TensorDiff diff_tensors(const std::string& name, int step, std::span<const float> a, std::span<const float> b);

// Runs both models (their configs must match) and compares them; leaves their tracers unset.
OpCompareResult compare_ops(Model& a, Model& b, const OpCompareOptions& options, ThreadPool& pool);

}  // namespace moe
