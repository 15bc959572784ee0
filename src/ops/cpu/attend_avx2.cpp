// The attention kernel compiled for the avx2 level (flags in CMakeLists.txt).
#include "ops/cpu/attend_impl.h"

namespace moe {

AttendFn attend_avx2() { return attend_impl; }

}  // namespace moe
