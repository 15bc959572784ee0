#pragma once
// Reading the `<arch>.*` hyperparameter keys shared by the Qwen3 family.
#include "gguf/reader.h"
#include "models/model.h"

namespace moe {

// Fills the fields every transformer of the family has; throws moe::Error naming a missing or
// inconsistent key.
ModelConfig read_transformer_config(const gguf::Reader& reader);

}  // namespace moe
