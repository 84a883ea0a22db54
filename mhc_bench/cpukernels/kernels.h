/* What the C kernels share: the element type, name suffix, and 32-byte vector types.
 * Built twice: -DREAL=float -DSFX=f32 and -DREAL=double -DSFX=f64. */
#ifndef MHC_KERNELS_H
#define MHC_KERNELS_H
#include <math.h>
#include <stdlib.h>

#ifndef REAL
#define REAL float
#define SFX f32
#endif
#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define FN(name) CAT(name, SFX)

typedef long long i64;
#define INLINE static inline __attribute__((always_inline))

typedef REAL vec __attribute__((vector_size(32)));
typedef REAL uvec __attribute__((vector_size(32), aligned(sizeof(REAL))));  /* unaligned loads */
#define VL ((int)(32 / sizeof(REAL)))
#define FMA(a, b, c) _Generic((a), float: fmaf, default: fma)(a, b, c)

#endif
