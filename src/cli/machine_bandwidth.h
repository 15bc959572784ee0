#pragma once
// The bandwidths a placement's decode ceilings take (engine/placement.h), for the commands that
// print them: inspect's plan and bench's hybrid runs.
#include <optional>

#include "core/thread_pool.h"
#include "engine/placement.h"

namespace moe::cli {

// Each bandwidth given (> 0) as it is; otherwise RAM measured by `pool`'s threads, the GPU's
// peak from what device `gpu` reports, and with `measure_link` the link by a copy-engine read
// of pinned memory on that device (else the link stays unknown: no PCIe experts in the
// ceilings). Without a device (or a CUDA build) the GPU's and the link's stay as given.
MachineBandwidth machine_bandwidth(const MachineBandwidth& given, ThreadPool& pool, std::optional<int> gpu,
                                   bool measure_link);

}  // namespace moe::cli
