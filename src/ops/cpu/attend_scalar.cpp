// The attention kernel compiled for the scalar level (flags in CMakeLists.txt).
#include "ops/cpu/attend_impl.h"

namespace moe {

AttendFn attend_scalar() { return attend_impl; }

}  // namespace moe
