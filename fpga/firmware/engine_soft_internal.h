/* Private to engine_soft.c and engine_soft_check.c: the integer helpers, numpy's shift
 * semantics and the descriptor's field access they share (engine_soft.h has the contract). */
#ifndef SPARSEBP_ENGINE_SOFT_INTERNAL_H
#define SPARSEBP_ENGINE_SOFT_INTERNAL_H
#include "engine_soft.h"
#include "engine_isa.h"

typedef int64_t i64;
typedef uint64_t u64;

#define L_MAX SOFT_ENGINE_MAX_LANES
#define FIELD(name) ((i64)(int32_t)d[ISA_##name])
#define FIELDK(name, k) ((i64)(int32_t)d[ISA_##name + (k)])
#define RF(r, name) ((i64)(int32_t)(r)->d[ISA_##name])
#define RFK(r, name, k) ((i64)(int32_t)(r)->d[ISA_##name + (k)])

static inline i64 min64(i64 a, i64 b) { return a < b ? a : b; }
static inline i64 max64(i64 a, i64 b) { return a > b ? a : b; }
static inline i64 clip64(i64 v, i64 lo, i64 hi) { return v < lo ? lo : v > hi ? hi : v; }
/* divisions by powers of two as shifts: RV32IM has no 64-bit divide (and a >> 3 floors) */
static inline i64 floor_div8(i64 a) { return a >> 3; }

/* numpy's int64 shifts: past 63 bits a left shift gives 0 and a right shift the sign */
static inline i64 shl(i64 a, i64 s) { return s >= 64 ? 0 : (i64)((u64)a << s); }
static inline i64 shr(i64 a, i64 s) { return s >= 64 ? (a < 0 ? -1 : 0) : a >> s; }
static inline i64 sub_wrap(i64 a, i64 b) { return (i64)((u64)a - (u64)b); }

/* fixedpoint.round_shift: (a + 2^(k-1)) >> k for k >= 1, exactly (no overflow), shifts past 62
 * floored away first as the golden model does */
static inline i64 round_shift(i64 a, i64 k)
{
    i64 excess = k > 62 ? k - 62 : 0;
    a = shr(a, min64(excess, 63));
    k -= excess;
    if (k == 0)
        return a;
    i64 mask = ((i64)1 << k) - 1;
    return (a >> k) + ((a & mask) >= ((i64)1 << (k - 1)));
}

/* fixedpoint.shift_signed: round_shift for k >= 0, a left shift by -k otherwise */
static inline i64 shift_signed(i64 a, i64 k) { return k < 0 ? shl(a, -k) : round_shift(a, k); }

static inline int bitlen(u64 a)
{
    int n = 0;
    while (a) { n++; a >>= 1; }
    return n;
}

static inline uint32_t xorshift32(uint32_t x)
{
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

/* Little-endian words: one word access where the address is aligned (the CPUs this runs on are
 * little-endian), bytes otherwise. Byte assembly costs VexRiscv Lite 48 cycles of shifts (its
 * shifter moves one bit a cycle) besides four bus reads. */
static inline i64 read_s8(const uint8_t *mem, i64 at) { return (int8_t)mem[at]; }
static inline uint32_t read_u32(const uint8_t *mem, i64 at)
{
    const uint8_t *p = mem + at;
    if (!((uintptr_t)p & 3)) {
        uint32_t v;
        __builtin_memcpy(&v, __builtin_assume_aligned(p, 4), 4);
        return v;
    }
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline i64 read_s32(const uint8_t *mem, i64 at) { return (int32_t)read_u32(mem, at); }
static inline void write_u32(uint8_t *mem, i64 at, uint32_t v)
{
    uint8_t *p = mem + at;
    if (!((uintptr_t)p & 3)) {
        __builtin_memcpy(__builtin_assume_aligned(p, 4), &v, 4);
        return;
    }
    p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24;
}

/* the packed signed 4-bit row/col coefficients */
static inline i64 coef(const uint32_t *d, int word, int k)
{
    uint32_t c = (d[word] >> (ISA_COEF_BITS * k)) & ((1u << ISA_COEF_BITS) - 1);
    return c >= (1u << (ISA_COEF_BITS - 1)) ? (i64)c - (1 << ISA_COEF_BITS) : (i64)c;
}

static inline int list_loop(const uint32_t *d)
{
    int code = (int)((FIELD(FLAGS) >> ISA_LIST_SHIFT) & 7);
    return code ? code - 1 : -1;
}

static inline int list_chunk(const uint32_t *d) { return list_loop(d) >= 0 && list_loop(d) == FIELD(CHUNK_LOOP); }
static inline i64 param_count(const uint32_t *d) { return list_chunk(d) ? FIELD(LIST_LIMIT) : FIELD(LANES_TOTAL); }

static inline int needs_params(const uint32_t *d)
{
    i64 e = FIELD(EPILOGUE);
    return e == ISA_REQUANT || e == ISA_UPDATE || e == ISA_BIAS_UPDATE
           || (e == ISA_GRADIENT && (FIELD(FLAGS) & ISA_FLAG_SCALE));
}

#endif
