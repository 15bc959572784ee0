// The attention kernel compiled for the avx512 level (flags in CMakeLists.txt).
#include "ops/cpu/attend_impl.h"

namespace moe {

AttendFn attend_avx512() { return attend_impl; }

}  // namespace moe
