// Which path of kernels.h this library was compiled for: 16 where a 16-lane vector is one AVX-512 register, 8 where
// it is two 8-lane halves (AVX2, or a build with PRUNING_KERNELS_ISA=avx2): the tests tell the builds apart by it.
#include "kernels.h"

extern "C" int64_t register_lanes() {
#ifdef __AVX512F__
  return 16;
#else
  return 8;
#endif
}
