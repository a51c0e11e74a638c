// What every kernel file shares: the 16-lane SIMD vectors and their helpers, the thread split, the transposes
// between (images, units) and (units, images), and the functions one file defines for another.
//
// The kernels (one file per part, all built into one library by kernels.py): the population step's conv1 (conv1.cpp),
// conv2 (conv2.cpp, and over surviving taps conv2_taps.cpp), sparse linear layers (linear.cpp) and SGD update
// (sgd.cpp); whole members (member_step.cpp, with their conv and linear layers in member_conv.cpp and
// member_linear.cpp); isa.cpp says which vector path was compiled. Each exports its entry points as extern "C";
// kernels.py names their arguments.
//
// Plain loops over GCC vector types, so that the compiler picks the machine's SIMD width. Deterministic:
// the same inputs give the same bits whatever else runs (no threads, fixed summation order), and every
// SIMD lane computes one channel of one member on its own, so a member's bits do not depend on the others.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#include <thread>
#include <vector>
#include <type_traits>

typedef uint8_t u16 __attribute__((vector_size(16)));
static const int64_t L = 16;
#ifdef __AVX512F__
typedef float v16 __attribute__((vector_size(64)));
typedef int32_t i16 __attribute__((vector_size(64)));
#else
// Without AVX-512, GCC 12 compiles 16-lane generic vectors badly: comparisons, selects and conversions become
// scalar code, and values pass through the stack in pieces that the next vector load cannot forward from. On an
// AMD EPYC with AVX2 only (2026-12-02) the dense M=10 step took 55-80 ms, against 12-15 ms with the halves below.
// So there a 16-lane vector is two 8-lane halves, which map to AVX2 registers, with the operators the kernels use
// (and ld/st move each half as one register). The same operations lane by lane.
typedef float v8 __attribute__((vector_size(32)));
typedef int32_t i8 __attribute__((vector_size(32)));
typedef float __attribute__((may_alias)) float_a;
typedef int32_t __attribute__((may_alias)) int_a;
struct v16 {
  v8 a, b;
  v16() = default;
  v16(float s) : a(v8{} + s), b(v8{} + s) {}
  v16(v8 x, v8 y) : a(x), b(y) {}
  float &operator[](int64_t i) { return ((float_a *)this)[i]; }
  float operator[](int64_t i) const { return ((const float_a *)this)[i]; }
  v16 &operator+=(v16 o) { a += o.a; b += o.b; return *this; }
};
static inline v16 operator+(v16 x, v16 y) { return {x.a + y.a, x.b + y.b}; }
static inline v16 operator-(v16 x, v16 y) { return {x.a - y.a, x.b - y.b}; }
static inline v16 operator*(v16 x, v16 y) { return {x.a * y.a, x.b * y.b}; }
static inline v16 operator+(float s, v16 y) { return {s + y.a, s + y.b}; }
static inline v16 operator+(v16 x, float s) { return {x.a + s, x.b + s}; }
static inline v16 operator*(float s, v16 y) { return {s * y.a, s * y.b}; }
static inline v16 operator*(v16 x, float s) { return {x.a * s, x.b * s}; }
struct i16 {
  i8 a, b;
  i16() = default;
  i16(i8 x, i8 y) : a(x), b(y) {}
  int32_t &operator[](int64_t i) { return ((int_a *)this)[i]; }
  int32_t operator[](int64_t i) const { return ((const int_a *)this)[i]; }
};
static inline i16 operator|(i16 x, i16 y) { return {x.a | y.a, x.b | y.b}; }
static inline i16 operator&(i16 x, i16 y) { return {x.a & y.a, x.b & y.b}; }
static inline i16 operator~(i16 x) { return {~x.a, ~x.b}; }
#endif

static inline i16 splat(int32_t v) {
  i16 r;
  for (int64_t e = 0; e < L; e++) r[e] = v;
  return r;
}

// Lane-wise comparisons, selects and width changes of the 16-lane vectors: with AVX-512 the vector operators
// themselves; without it, on the two 8-lane halves (see v16 above). Exact operations: the same bits either way.
#ifdef __AVX512F__
static inline i16 gt(v16 a, v16 b) { return a > b; }
static inline i16 lt(v16 a, v16 b) { return a < b; }
static inline i16 le(v16 a, v16 b) { return a <= b; }
static inline i16 nan(v16 a) { return a != a; }
static inline i16 eq(i16 a, i16 b) { return a == b; }
static inline i16 lt(i16 a, i16 b) { return a < b; }
static inline v16 sel(i16 t, v16 a, v16 b) { return t ? a : b; }
static inline i16 sel(i16 t, i16 a, i16 b) { return t ? a : b; }
static inline u16 narrow(i16 v) { return __builtin_convertvector(v, u16); }
static inline i16 widen(u16 v) { return __builtin_convertvector(v, i16); }
#else
typedef uint8_t u8 __attribute__((vector_size(8)));
static inline i16 gt(v16 x, v16 y) { return {(i8)(x.a > y.a), (i8)(x.b > y.b)}; }
static inline i16 lt(v16 x, v16 y) { return {(i8)(x.a < y.a), (i8)(x.b < y.b)}; }
static inline i16 le(v16 x, v16 y) { return {(i8)(x.a <= y.a), (i8)(x.b <= y.b)}; }
static inline i16 nan(v16 x) { return {(i8)(x.a != x.a), (i8)(x.b != x.b)}; }
static inline i16 eq(i16 x, i16 y) { return {x.a == y.a, x.b == y.b}; }
static inline i16 lt(i16 x, i16 y) { return {x.a < y.a, x.b < y.b}; }
static inline v16 sel(i16 t, v16 x, v16 y) { return {t.a ? x.a : y.a, t.b ? x.b : y.b}; }
static inline i16 sel(i16 t, i16 x, i16 y) { return {t.a ? x.a : y.a, t.b ? x.b : y.b}; }
static inline u16 narrow(i16 v) {
  const u8 x = __builtin_convertvector(v.a, u8), y = __builtin_convertvector(v.b, u8);
  u16 r;
  std::memcpy(&r, &x, sizeof x);
  std::memcpy((char *)&r + sizeof x, &y, sizeof y);
  return r;
}
static inline i16 widen(u16 v) {
  u8 x, y;
  std::memcpy(&x, &v, sizeof x);
  std::memcpy(&y, (const char *)&v + sizeof x, sizeof y);
  return {__builtin_convertvector(x, i8), __builtin_convertvector(y, i8)};
}
#endif

// Loads and stores of whole vectors (and other values) from and to memory. For the two-halves vector (AVX2) each
// half is moved as one 32-byte register: a 64-byte memcpy into the struct went through 16-byte pieces that the
// next 32-byte load could not forward from, a stall per access.
template <class T> static inline void ld(T &v, const void *p) { std::memcpy(&v, p, sizeof v); }
template <class T> static inline void st(void *p, const T &v) { std::memcpy(p, &v, sizeof v); }
#ifndef __AVX512F__
static inline void ld(v16 &v, const void *p) {
  std::memcpy(&v.a, p, sizeof v.a);
  std::memcpy(&v.b, (const char *)p + sizeof v.a, sizeof v.b);
}
static inline void st(void *p, const v16 &v) {
  std::memcpy(p, &v.a, sizeof v.a);
  std::memcpy((char *)p + sizeof v.a, &v.b, sizeof v.b);
}
#endif

// p[0], p[stride], ..., p[15 * stride] as one vector (AVX2: built in registers, not through the stack)
static inline v16 strided16(const float *p, int64_t stride) {
#if !defined(__AVX512F__) && defined(__AVX2__)
  const __m256 x = _mm256_setr_ps(p[0], p[stride], p[2 * stride], p[3 * stride], p[4 * stride], p[5 * stride],
                                  p[6 * stride], p[7 * stride]);
  const float *q = p + 8 * stride;
  const __m256 y = _mm256_setr_ps(q[0], q[stride], q[2 * stride], q[3 * stride], q[4 * stride], q[5 * stride],
                                  q[6 * stride], q[7 * stride]);
  return {(v8)x, (v8)y};
#else
  v16 r;
  for (int64_t o = 0; o < L; o++) r[o] = p[o * stride];
  return r;
#endif
}

// conv2's pooling: max_pool2d over a window's 4 positions r0..r3 (the first maximum in window order wins, and NaN
// wins, as in max_pool2d), then ReLU; won: the winning position, or 4 where ReLU is inactive (the pooled value is
// <= 0, so no gradient flows back). A selection only: no rounding.
static inline void pool_relu(v16 r0, v16 r1, v16 r2, v16 r3, v16 &best, i16 &won) {
  const v16 zero = {0};
  i16 t;
  best = r0;
  won = splat(0);
  t = gt(r1, best) | nan(r1); best = sel(t, r1, best); won = sel(t, splat(1), won);
  t = gt(r2, best) | nan(r2); best = sel(t, r2, best); won = sel(t, splat(2), won);
  t = gt(r3, best) | nan(r3); best = sel(t, r3, best); won = sel(t, splat(3), won);
  t = le(best, zero);
  best = sel(t, zero, best);
  won = sel(t, splat(4), won);
}

static inline float hsum(v16 v) {  // a fixed tree: the same bits for the same lanes
  typedef float v8 __attribute__((vector_size(32)));
  typedef float v4 __attribute__((vector_size(16)));
  v8 lo, hi;
  ld(lo, &v);
  ld(hi, (const char *)&v + sizeof lo);
  lo += hi;
  v4 a, c;
  ld(a, &lo);
  ld(c, (const char *)&lo + sizeof a);
  a += c;
  return (a[0] + a[2]) + (a[1] + a[3]);
}

// f(begin, end) over [0, n), cut into `threads` contiguous ranges run on their own threads. Every kernel below
// cuts its work where the pieces write disjoint outputs and each sum keeps its order, so the result does not
// depend on the number of threads.
template <class F>
static void parallel(int64_t n, int64_t threads, F f) {
  threads = std::max<int64_t>(1, std::min(threads, n));
  if (threads == 1) {
    f(0, n);
    return;
  }
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; t++) pool.emplace_back(f, n * t / threads, n * (t + 1) / threads);
  f(0, n / threads);
  for (auto &th : pool) th.join();
}

// (n, IN) rows <-> (IN, NP) columns, a chunk of images at a time (conv2_taps.cpp, linear.cpp)
static inline void transpose_chunk(const float *x, int64_t IN, int64_t b0, int64_t nb, int64_t NP, float *xT) {
  // xT[j * NP + b] = x[(b0 + b) * IN + j], zero for nb <= b < NP; in 16 x 16 tiles that stay in the L1 cache
  float tile[16][16];
  for (int64_t j0 = 0; j0 < IN; j0 += 16) {
    const int64_t nj = std::min<int64_t>(16, IN - j0);
    for (int64_t c0 = 0; c0 < NP; c0 += 16) {
      for (int64_t b = 0; b < 16; b++) {
        if (c0 + b < nb && nj == 16)  // a fixed size: not a library call per row
          std::memcpy(tile[b], x + (b0 + c0 + b) * IN + j0, 16 * sizeof(float));
        else if (c0 + b < nb)
          for (int64_t j = 0; j < nj; j++) tile[b][j] = x[(b0 + c0 + b) * IN + j0 + j];
        else
          for (int64_t j = 0; j < nj; j++) tile[b][j] = 0.0f;
      }
      for (int64_t j = 0; j < nj; j++)
        for (int64_t b = 0; b < 16; b++) xT[(j0 + j) * NP + c0 + b] = tile[b][j];
    }
  }
}

static inline void untranspose_chunk(const float *xT, int64_t NP, int64_t IN, int64_t b0, int64_t nb, float *x) {
  // x[(b0 + b) * IN + j] = xT[j * NP + b] for b < nb: the inverse of transpose_chunk
  float tile[16][16];
  for (int64_t j0 = 0; j0 < IN; j0 += 16) {
    const int64_t nj = std::min<int64_t>(16, IN - j0);
    for (int64_t c0 = 0; c0 < nb; c0 += 16) {
      const int64_t ncb = std::min<int64_t>(16, nb - c0);
      for (int64_t j = 0; j < nj; j++)
        for (int64_t b = 0; b < 16; b++) tile[b][j] = xT[(j0 + j) * NP + c0 + b];
      for (int64_t b = 0; b < ncb; b++)
        for (int64_t j = 0; j < nj; j++) x[(b0 + c0 + b) * IN + j0 + j] = tile[b][j];
    }
  }
}

// Defined in one file, called from another (hidden: not exported from the library). A call between files is not
// inlined; each passes pointers and integers only, never a float that an inlined caller could fuse into a
// multiply-add, so the operations and their roundings are those of the same code compiled as one file.
#define INTERNAL __attribute__((visibility("hidden")))

// conv2 over surviving taps (conv2_taps.cpp), for the members op marks (on_taps); conv2.cpp computes the others.
static inline bool on_taps(const int64_t *op, int64_t m) { return op && op[m * (L + 1)] >= 0; }
INTERNAL void conv2_taps_forward(const float *a1, const float *wt, const float *bias, float *a2, uint8_t *idx,
                                 const int64_t *op, const int32_t *taps, float *acache, int64_t n, int64_t H,
                                 int64_t W, int64_t CS, int64_t M, int64_t Ci, int64_t threads);
INTERNAL void conv2_taps_backward_member(const float *a1, const float *wt, const uint8_t *idx, const float *ga2,
                                         float *gwt, float *gb, float *da1, const int64_t *om, const int32_t *taps,
                                         const float *acache, int64_t m, int64_t n, int64_t H, int64_t W, int64_t CS,
                                         int64_t M, int64_t Ci);

// A whole member's layers (member_conv.cpp, member_linear.cpp), called by member_step.cpp.
INTERNAL void mk_taps(const float *w, int64_t O, int64_t K, int64_t H, int64_t W, int64_t NP, const int64_t *rp,
                      const int32_t *cols, float *wv, int64_t *toff);
INTERNAL void mk_conv_forward(const float *in, int64_t H, int64_t W, int64_t NP, const float *wv, const int64_t *toff,
                              const float *b, int64_t Co, const int64_t *rp, float *out, uint8_t *code);
INTERNAL void mk_conv_backward(const float *in, int64_t H, int64_t W, int64_t NP, const float *wv,
                               const int64_t *toff, int64_t Co, const int64_t *rp, const float *gout,
                               const uint8_t *code, v16 *gacc, v16 *gbias, float *gin);
INTERNAL void mk_linear_forward(const float *in, int64_t NP, const float *w, const float *b, int64_t O, int64_t K,
                                const int64_t *rp, const int32_t *cols, float *out, bool relu);
INTERNAL void mk_linear_backward(const float *in, int64_t NP, const float *w, int64_t O, int64_t K, const int64_t *rp,
                                 const int32_t *cols, const int64_t *cp, const int32_t *rows, const float *gout,
                                 float *gv, float *gb, float *gin);
