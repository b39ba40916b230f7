/* The engine's programs run by a CPU (engine_soft.h has the contract): each descriptor checked
 * (engine_soft_check.c), then executed as the golden executor (golden/engine/executor.py) does,
 * one function for one, in scalar loops: an output vector at a time, its reduction, then its
 * epilogue. Numerics are docs/numerics.md's, with numpy's shift semantics where the golden model
 * relies on them (engine_soft_internal.h). Only 64-bit integers are used (no __int128), so the
 * same files build for RV32IM. The reductions run in 32-bit arithmetic where a descriptor's
 * bounds allow (engine_soft_reduce.c), and the hot paths avoid 64-bit products and long shifts,
 * which cost VexRiscv Lite tens of cycles each (docs/soc.md, "Where the soft engine's cycles go").
 */
#include "engine_soft_internal.h"
#include "engine_soft_reduce.h"

/* ------------------------------------------------------------------ execution */

struct run {
    struct soft_engine *engine;
    const uint32_t *d;
    i64 L, counts[ISA_LOOPS], lanes_total, chunk_loop, flags;
    int looped, chunk_listed;
    i64 row_coefs[ISA_LOOPS], col_coefs[ISA_LOOPS], a_strides[ISA_LOOPS], b_strides[ISA_LOOPS];
    /* what one step of reduction loop 3 + k adds to A's row, column and address and to B's address */
    i64 step_row[3], step_col[3], step_a[3], step_b[3];
    const uint8_t *params;      /* the parameter table's memory, at param_base */
    int32_t param_channels;     /* C: bias[C] int32, mult[C] uint32, shift[C] uint8 */
    int lanes_log2;             /* L = 2^lanes_log2 */
    /* every row, column and address any vector's reduction reaches is within +-2^30
       (fits_32_bits) and the mode is not SUMS: accumulate uses soft_reduce with `reduction` */
    int fits32;
    struct reduction reduction;
};

static i64 list_entry(const struct run *r, i64 i)
{
    i64 at = RF(r, LIST_ADDR) + 2 * i;
    return r->engine->scratchpad[at] | (i64)r->engine->scratchpad[at + 1] << 8;
}

/* loop indices as an operand's address generator sees them: the list loop's index i becomes
 * list[i] where the operand's list flag is set */
static void through_list(const struct run *r, const i64 *idx, i64 flag, i64 *out)
{
    for (int k = 0; k < ISA_LOOPS; k++)
        out[k] = idx[k];
    if (r->looped >= 0 && (r->flags & flag))
        out[r->looped] = list_entry(r, idx[r->looped]);
}

static i64 active_lanes(const struct run *r, i64 chunk)
{
    return r->chunk_listed ? r->lanes_total : min64(r->L, r->lanes_total - shl(chunk, r->lanes_log2));
}

/* the parameter table: bias[C] int32, then mult[C] uint32, then shift[C] uint8 */
static inline i64 param_bias(const struct run *r, int32_t c) { return read_s32(r->params, 4 * c); }
static inline i64 param_mult(const struct run *r, int32_t c) { return read_u32(r->params + 4 * r->param_channels, 4 * c); }
static inline i64 param_shift(const struct run *r, int32_t c) { return r->params[8 * r->param_channels + c] & 63; }

/* The output vector's address. A descriptor that passed its checks writes inside the memory, so
 * the address fits in 32 bits and 32-bit wrapping arithmetic gives it exactly (RV32IM's 64-bit
 * product takes four multiplications); the list applies only where the descriptor has one. */
static i64 out_address(const struct run *r, const i64 *o)
{
    i64 ot[ISA_LOOPS];
    const i64 *index = o;
    if (r->looped >= 0) {
        through_list(r, o, ISA_FLAG_LIST_OUT, ot);
        index = ot;
    }
    uint32_t at = (uint32_t)RF(r, OUT_BASE);
    for (int k = 0; k < ISA_OUTPUT_LOOPS; k++)
        at += (uint32_t)RFK(r, OUT_STRIDES, k) * (uint32_t)index[k];
    return (int32_t)at;
}

/* The 64-bit walk (SUMS mode, and descriptors fits_32_bits refuses; accumulate has the fast one).
 * The accumulators of the output vector at output indices o[0..2] (loops 3..5 reduced):
 * 32-bit two's complement, one per lane, or one in dot mode.
 * Lists apply only to output loops, so within a vector A's row, column and address and B's
 * address are linear in the reduction indices: they are walked by adding each loop's step
 * (`struct run`'s reduction steps), with no multiplication in the loop nest (RV32IM's iterative
 * multiplier takes tens of cycles). An address is used only where A's row and column are inside
 * the image; a descriptor that passed its checks then has it inside the memory. */
static void accumulate_generic(const struct run *r, const i64 *o, int32_t *acc)
{
    const uint32_t *d = r->d;
    const uint8_t *spad = r->engine->scratchpad;
    const uint8_t *b_mem = (r->flags & ISA_FLAG_B_EXTERNAL) ? r->engine->external : spad;
    int L = (int)r->L, mode = (int)FIELD(MODE), a_zero = (int)FIELD(A_ZERO);
    int a_vector = mode != ISA_BROADCAST, ones = (r->flags & ISA_FLAG_B_ONES) != 0;
    i64 rows = FIELD(A_ROWS), cols = FIELD(A_COLS);
    uint32_t sum[L_MAX];
    for (int l = 0; l < L; l++)
        sum[l] = 0;
    /* the vector's origin: the output loops' terms, list entries where the operand takes them */
    i64 at[ISA_LOOPS], bt[ISA_LOOPS], row = FIELD(A_ROW0), col = FIELD(A_COL0);
    i64 a_origin = FIELD(A_BASE), b_origin = FIELD(B_BASE);
    through_list(r, o, ISA_FLAG_LIST_A, at);
    through_list(r, o, ISA_FLAG_LIST_B, bt);
    for (int k = 0; k < ISA_OUTPUT_LOOPS; k++) {
        row += r->row_coefs[k] * o[k];
        col += r->col_coefs[k] * o[k];
        a_origin += r->a_strides[k] * at[k];
        b_origin += r->b_strides[k] * bt[k];
    }
    a_origin += row * FIELD(A_ROW_STRIDE) + col * FIELD(A_COL_STRIDE);
    /* in dot mode the chunk loop is a reduction loop and the active lanes change with it */
    int chunk_reduced = r->chunk_loop >= ISA_OUTPUT_LOOPS;
    int active = chunk_reduced ? 0 : (int)active_lanes(r, o[r->chunk_loop]);
    int step = 0;
    const i64 *dr = r->step_row, *dc = r->step_col, *da = r->step_a, *db = r->step_b;
    i64 row3 = row, col3 = col, a3 = a_origin, b3 = b_origin;
    for (i64 i3 = 0; i3 < r->counts[3]; i3++, row3 += dr[0], col3 += dc[0], a3 += da[0], b3 += db[0]) {
        i64 row4 = row3, col4 = col3, a4 = a3, b4 = b3;
        for (i64 i4 = 0; i4 < r->counts[4]; i4++, row4 += dr[1], col4 += dc[1], a4 += da[1], b4 += db[1]) {
            i64 row5 = row4, col5 = col4, a5 = a4, b5 = b4;
            for (i64 i5 = 0; i5 < r->counts[5]; i5++, row5 += dr[2], col5 += dc[2], a5 += da[2], b5 += db[2], step++) {
                if (chunk_reduced) {
                    i64 reduced[3] = {i3, i4, i5};
                    active = (int)active_lanes(r, reduced[r->chunk_loop - ISA_OUTPUT_LOOPS]);
                }
                int valid = row5 >= 0 && row5 < rows && col5 >= 0 && col5 < cols;
                int32_t a_addr = (int32_t)a5, b_addr = (int32_t)b5;
                if (mode == ISA_SUMS) {
                    /* lane l's accumulator is the int32 at byte 4 (l mod L/4) of the row read at step l div L/4 */
                    int per_row = L / 4;
                    for (int l = 0; l < active; l++)
                        if (l / per_row == step && valid)
                            sum[l] = read_u32(spad, a_addr + 4 * (l % per_row));
                    continue;
                }
                int32_t broadcast_a = !a_vector && valid ? (int8_t)spad[a_addr] - a_zero : 0;
                for (int l = 0; l < active; l++) {
                    int32_t a = a_vector ? (valid ? (int8_t)spad[a_addr + l] - a_zero : 0) : broadcast_a;
                    int32_t b = ones ? 1 : (int8_t)b_mem[b_addr + l];
                    sum[mode == ISA_DOT ? 0 : l] += (uint32_t)(a * b);
                }
            }
        }
    }
    for (int l = 0; l < L; l++)
        acc[l] = (int32_t)sum[l];
}

/* accumulate through soft_reduce (engine_soft_reduce.c), or 0 when the descriptor's rows,
 * columns or addresses might not fit in 32 bits (far outside any memory: accumulate_generic
 * then walks them in 64 bits) or the mode is SUMS. The origin's terms are 32-bit products,
 * each within fits_32_bits's bound (RV32IM's 64-bit product takes four multiplications). */
static int accumulate32(const struct run *r, const i64 *o, int32_t *acc)
{
    if (!r->fits32)
        return 0;
    const uint32_t *d = r->d;
    i64 at[ISA_LOOPS], bt[ISA_LOOPS];
    const i64 *a_index = o, *b_index = o;
    if (r->looped >= 0) {
        through_list(r, o, ISA_FLAG_LIST_A, at);
        through_list(r, o, ISA_FLAG_LIST_B, bt);
        a_index = at;
        b_index = bt;
    }
    int32_t row = (int32_t)FIELD(A_ROW0), col = (int32_t)FIELD(A_COL0);
    int32_t a = (int32_t)FIELD(A_BASE), b = (int32_t)FIELD(B_BASE);
    for (int k = 0; k < ISA_OUTPUT_LOOPS; k++) {
        row += (int32_t)r->row_coefs[k] * (int32_t)o[k];
        col += (int32_t)r->col_coefs[k] * (int32_t)o[k];
        a += (int32_t)r->a_strides[k] * (int32_t)a_index[k];
        b += (int32_t)r->b_strides[k] * (int32_t)b_index[k];
    }
    a += row * (int32_t)FIELD(A_ROW_STRIDE) + col * (int32_t)FIELD(A_COL_STRIDE);
    int32_t active = r->chunk_loop >= ISA_OUTPUT_LOOPS ? 0 : (int32_t)active_lanes(r, o[r->chunk_loop]);
    soft_reduce(&r->reduction, row, col, a, b, active, acc);
    return 1;
}

/* The accumulators of the output vector at output indices o[0..2]: accumulate32 where it
 * applies, else accumulate_generic; both give the same 32-bit sums. */
static void accumulate(const struct run *r, const i64 *o, int32_t *acc)
{
    if (!accumulate32(r, o, acc))
        accumulate_generic(r, o, acc);
}

/* The reduction's constants for soft_reduce, when accumulate32 applies. */
static void prepare_reduction(struct run *r)
{
    const uint32_t *d = r->d;
    struct reduction *q = &r->reduction;
    int mode = (int)FIELD(MODE);
    *q = (struct reduction){.spad = r->engine->scratchpad,
                            .b_mem = (r->flags & ISA_FLAG_B_EXTERNAL) ? r->engine->external : r->engine->scratchpad,
                            .rows = (int32_t)FIELD(A_ROWS), .cols = (int32_t)FIELD(A_COLS),
                            .a_zero = (int32_t)FIELD(A_ZERO), .lanes = (int32_t)r->L,
                            .lanes_total = (int32_t)r->lanes_total,
                            .a_vector = mode != ISA_BROADCAST, .dot = mode == ISA_DOT,
                            .ones = (r->flags & ISA_FLAG_B_ONES) != 0,
                            .chunk_reduced = r->chunk_loop >= ISA_OUTPUT_LOOPS, .chunk_listed = r->chunk_listed,
                            .chunk_at = (int)(r->chunk_loop >= ISA_OUTPUT_LOOPS ? r->chunk_loop - ISA_OUTPUT_LOOPS : 0)};
    q->lanes_log2 = r->lanes_log2;
    for (int k = 0; k < 3; k++) {
        q->counts[k] = (int32_t)r->counts[ISA_OUTPUT_LOOPS + k];
        q->step_row[k] = (int32_t)r->step_row[k];
        q->step_col[k] = (int32_t)r->step_col[k];
        q->step_a[k] = (int32_t)r->step_a[k];
        q->step_b[k] = (int32_t)r->step_b[k];
    }
}

/* Visits every output vector in loop order (loops 0..2, loop 0 outermost). */
#define FOR_OUTPUTS(r, o) \
    for (o[0] = 0; o[0] < (r)->counts[0]; o[0]++) \
    for (o[1] = 0; o[1] < (r)->counts[1]; o[1]++) \
    for (o[2] = 0; o[2] < (r)->counts[2]; o[2]++)

static void write_mask(const struct run *r, i64 offset, const int *bits, i64 active)
{
    uint8_t *spad = r->engine->scratchpad;
    i64 at = RF(r, MASK_BASE) + floor_div8(offset);
    for (i64 j = 0; j < (active + 7) >> 3; j++) {
        uint8_t byte = 0;
        for (int b = 0; b < 8; b++)
            if (8 * j + b < active && bits[8 * j + b])
                byte |= 1u << b;
        spad[at + j] = byte;
    }
}

/* round_shift(v, k) for k in [33, 63] from v's high word alone (|result| <= 2^30): VexRiscv
 * Lite's shifter moves one bit a cycle, and a 64-bit shift is three of its shifts. For k >= 1,
 * round_shift(v, k) = (t >> 1) + (t & 1) with t = v >> (k - 1) (floor shifts; the golden
 * model's shift past 62 floors first, which this form includes). */
static inline int32_t round_shift_high(i64 v, int k)
{
    int32_t t = (int32_t)((u64)v >> 32) >> (k - 33);
    return (t >> 1) + (t & 1);
}

/* clip(round_shift(v, k), -limit, limit) for k in [0, 63] (numerics 4.2) and limit < 2^30. */
static inline int32_t round_shift_clamp(i64 v, int k, int32_t limit)
{
    i64 t;
    if (k > 32) {
        t = round_shift_high(v, k);
    } else if (k == 0) {
        t = v;
    } else {
        t = v >> (k - 1);
        t = (t >> 1) + (t & 1);
    }
    return (int32_t)clip64(t, -limit, limit);
}

/* The requantizer's round_shift(total x mult, k) clamped to [-1024, 1024]: the caller adds the
 * zero point and clamps to int8 next, so the clamp changes neither the byte nor the mask bit.
 * The product is int32 x uint32 (RV32IM's mul and mulhu with a sign fix, not 64 x 64). */
static inline int32_t requantize(int32_t total, uint32_t mult, int k)
{
    i64 p = (i64)total * (i64)mult;
    return k > 32 ? round_shift_high(p, k) : round_shift_clamp(p, k, 1024);   /* the usual case needs no clamp */
}

/* REQUANT and RAW32 (executor._write_mac_outputs) */
static void write_mac_outputs(const struct run *r, const i64 *o, const int32_t *acc)
{
    const uint32_t *d = r->d;
    uint8_t *spad = r->engine->scratchpad;
    i64 out = out_address(r, o), L = r->L;
    if (FIELD(MODE) == ISA_DOT) {
        write_u32(spad, out, (uint32_t)acc[0]);
        return;
    }
    i64 chunk = o[r->chunk_loop], active = min64(L, r->lanes_total - L * chunk);
    if (FIELD(EPILOGUE) == ISA_RAW32) {
        for (i64 l = 0; l < active; l++)
            write_u32(spad, out + 4 * l, (uint32_t)acc[l]);
        return;
    }
    int bits[L_MAX];
    int32_t first = (int32_t)shl(chunk, r->lanes_log2), last = (int32_t)r->lanes_total - 1;
    for (int32_t l = 0; l < active; l++) {
        int32_t c = first + l < last ? first + l : last;
        int32_t total = (int32_t)clip64(param_bias(r, c) + acc[l], INT32_MIN, INT32_MAX);
        int32_t pre = (int32_t)FIELD(ZERO_OUT) + requantize(total, (uint32_t)param_mult(r, c), (int)param_shift(r, c));
        spad[out + l] = (uint8_t)(int8_t)clip64(pre, -128, 127);
        bits[l] = pre >= -128 && pre <= 127;
    }
    if (r->flags & ISA_FLAG_WRITE_MASK)
        write_mask(r, out - FIELD(OUT_BASE), bits, active);
}

/* numerics 7.2's new weight for one lane; draws from *state when rounding stochastically */
static i64 new_weight(i64 W, int32_t grad, uint32_t M, i64 r, i64 rounding, uint32_t *state)
{
    i64 D = (i64)grad * (i64)M;     /* int32 x uint32: two multiplications on RV32IM, not four */
    if (r > ISA_MAX_FRACTION_BITS) {
        D = shr(D, min64(r - ISA_MAX_FRACTION_BITS, 63));
        r = ISA_MAX_FRACTION_BITS;
    }
    i64 up = max64(r, 0), new;
    if (rounding == ISA_ROUND_STOCHASTIC) {
        *state = xorshift32(*state);
        i64 x = *state;
        i64 R = r <= 32 ? shr(x, min64(32 - r, 32)) : shl(x, r - 32);
        new = sub_wrap(W, r > 0 ? (D + R) >> up : shl(D, -r));
    } else if (rounding == ISA_ROUND_TRUNCATE) {
        i64 a = W - (D >> up), fraction = D - ((D >> up) << up);
        new = r > 0 ? a - (fraction != 0 && a > 0) : sub_wrap(W, shl(D, -r));
    } else {
        new = sub_wrap(W, shift_signed(D, r));
    }
    return clip64(new, -127, 127);
}

/* UPDATE / BIAS_UPDATE (executor._update): active lanes in lane order, vectors in loop order */
static void run_update(const struct run *r)
{
    const uint32_t *d = r->d;
    uint8_t *spad = r->engine->scratchpad;
    i64 e_y = read_s32(spad, FIELD(EXP_ADDR));
    i64 rounding = (r->flags >> ISA_ROUNDING_SHIFT) & 3;
    uint32_t state = read_u32(spad, FIELD(PRNG_ADDR));
    if (state == 0)
        state = ISA_PRNG_ZERO_SEED;
    i64 o[ISA_LOOPS] = {0};
    int32_t acc[L_MAX];
    FOR_OUTPUTS(r, o) {
        accumulate(r, o, acc);
        i64 chunk = o[r->chunk_loop], active = active_lanes(r, chunk), out = out_address(r, o);
        i64 first = r->chunk_listed ? list_entry(r, chunk) : shl(chunk, r->lanes_log2);
        for (i64 l = 0; l < active; l++) {
            int32_t c = (int32_t)(first + l);
            uint32_t M = (uint32_t)param_mult(r, c);
            i64 shift = clip64(param_shift(r, c) - e_y, -128, 127);
            if (FIELD(EPILOGUE) == ISA_UPDATE) {
                i64 W = read_s8(spad, out + l);
                spad[out + l] = (uint8_t)(int8_t)new_weight(W, acc[l], M, shift, rounding, &state);
            } else {
                i64 old = read_s32(spad, out + 4 * l);
                i64 new = clip64(old - shift_signed((i64)acc[l] * (i64)M, shift), INT32_MIN, INT32_MAX);
                write_u32(spad, out + 4 * l, (uint32_t)new);
            }
        }
    }
    if (FIELD(EPILOGUE) == ISA_UPDATE)
        write_u32(spad, FIELD(PRNG_ADDR), state);
}

/* numerics 5's alignment of two gradients (executor._sum_shifts) */
struct sum_shifts { i64 right1, left1, right2, left2, exponent; };

static struct sum_shifts sum_shifts(const struct run *r)
{
    const uint8_t *spad = r->engine->scratchpad;
    i64 e1 = read_s32(spad, RF(r, EXP_ADDR)), e2 = read_s32(spad, RF(r, EXP2_ADDR));
    int swap = e1 > e2;
    i64 low = swap ? e2 : e1, high = swap ? e1 : e2, diff = high - low;
    i64 round_low = max64(0, diff - 23), left = min64(diff, 23);
    struct sum_shifts s = {round_low, 0, 0, left, high - left};
    if (swap)
        s = (struct sum_shifts){0, left, round_low, 0, high - left};
    return s;
}

/* How many values gradient_values gives for the output vector at o (1 for dot, else its
 * active lanes). */
static i64 gradient_count(const struct run *r, const i64 *o)
{
    const uint32_t *d = r->d;
    if (FIELD(OPCODE) == ISA_ADD)
        return min64(r->L, r->lanes_total - shl(o[0], r->lanes_log2));
    if (FIELD(MODE) == ISA_DOT)
        return 1;
    return min64(r->L, r->lanes_total - shl(o[r->chunk_loop], r->lanes_log2));
}

/* The gradient epilogue's values v of one output vector, and where each goes: `count` values
 * (1 for dot) at out, out + 1, ... (executor._mac's scaling and executor._add's sums). */
static i64 gradient_values(const struct run *r, const i64 *o, i64 *v, i64 *out)
{
    const uint32_t *d = r->d;
    const uint8_t *spad = r->engine->scratchpad;
    *out = out_address(r, o);
    if (FIELD(OPCODE) == ISA_ADD) {
        struct sum_shifts s = sum_shifts(r);
        i64 active = gradient_count(r, o), a_addr = FIELD(A_BASE), b_addr = FIELD(B_BASE);
        for (int k = 0; k < ISA_OUTPUT_LOOPS; k++) {
            a_addr += FIELDK(A_STRIDES, k) * o[k];
            b_addr += FIELDK(B_STRIDES, k) * o[k];
        }
        for (i64 l = 0; l < active; l++)
            v[l] = shl(round_shift(read_s8(spad, a_addr + l), s.right1), s.left1)
                   + shl(round_shift(read_s8(spad, b_addr + l), s.right2), s.left2);
        return active;
    }
    int32_t acc[L_MAX];
    accumulate(r, o, acc);
    if (FIELD(MODE) == ISA_DOT) {
        v[0] = acc[0];
        return 1;
    }
    i64 chunk = o[r->chunk_loop], active = gradient_count(r, o);
    if (!(r->flags & ISA_FLAG_SCALE)) {
        for (i64 l = 0; l < active; l++)
            v[l] = acc[l];
        return active;
    }
    int32_t first = (int32_t)shl(chunk, r->lanes_log2), last = (int32_t)r->lanes_total - 1;
    for (int32_t l = 0; l < active; l++) {
        /* the factor is 16 bits: an int32 x int32 product (mul and mulh), not 64 x 64 */
        int32_t factor = (int32_t)(param_mult(r, first + l < last ? first + l : last) & 0xFFFF);
        v[l] = (i64)acc[l] * factor;
    }
    return active;
}

/* Pass 1's values, kept for pass 2 when the descriptor has at most this many (8 KiB; the
 * built-in CNN's largest gradient has 768): pass 2 then reads them instead of running every
 * reduction again, as the golden executor computes them once. A larger descriptor's pass 2
 * recomputes them (the same values: pass 1 writes nothing). */
#define GRADIENT_VALUES_KEPT 1024
static i64 gradient_kept[GRADIENT_VALUES_KEPT];

/* GRADIENT (executor._quantize_and_write): pass 1 finds max|v|, k = max(0, bitlen - 7) and
 * writes the exponent e_A + k; pass 2 takes v (kept, or computed again) and writes
 * clamp(round_shift(v, k)) (masked) */
static void run_gradient(const struct run *r)
{
    const uint32_t *d = r->d;
    uint8_t *spad = r->engine->scratchpad;
    i64 e_A = FIELD(OPCODE) == ISA_ADD ? sum_shifts(r).exponent : read_s32(spad, FIELD(EXP_ADDR)) + FIELD(EXP_OFFSET);
    i64 o[ISA_LOOPS] = {0}, v[L_MAX], out, kept = 0;
    int keep = 1;
    u64 amax = 0;
    FOR_OUTPUTS(r, o) {
        i64 count = gradient_values(r, o, v, &out);
        keep = keep && kept + count <= GRADIENT_VALUES_KEPT;
        for (i64 l = 0; l < count; l++) {
            u64 magnitude = v[l] < 0 ? (u64)0 - (u64)v[l] : (u64)v[l];
            if (magnitude > amax)
                amax = magnitude;
            if (keep)
                gradient_kept[kept + l] = v[l];
        }
        kept += count;
    }
    i64 k = max64(0, bitlen(amax) - 7);
    write_u32(spad, FIELD(EXP_OUT_ADDR), (uint32_t)(e_A + k));
    const i64 *values = v;
    kept = 0;
    FOR_OUTPUTS(r, o) {
        i64 count;
        if (keep) {
            count = gradient_count(r, o);
            out = out_address(r, o);
            values = gradient_kept + kept;
            kept += count;
        } else {
            count = gradient_values(r, o, v, &out);
        }
        for (i64 l = 0; l < count; l++) {
            int32_t g = round_shift_clamp(values[l], (int)k, ISA_GRAD_MAX);
            if (r->flags & ISA_FLAG_MASK_IN) {
                /* the bit's offset is inside the memory (the output's), so 32 bits hold it */
                int32_t bit = (int32_t)(out + l - FIELD(OUT_BASE));
                if (!((spad[FIELD(MASK_BASE) + (bit >> 3)] >> (bit & 7)) & 1))
                    g = 0;
            }
            spad[out + l] = (uint8_t)(int8_t)g;
        }
    }
}

/* ADD with REQUANT: numerics 4.3's residual add (executor._add) */
static void run_residual_add(const struct run *r)
{
    const uint32_t *d = r->d;
    uint8_t *spad = r->engine->scratchpad;
    i64 L = r->L, o[ISA_LOOPS] = {0};
    FOR_OUTPUTS(r, o) {
        i64 active = min64(L, r->lanes_total - shl(o[0], r->lanes_log2));
        i64 a_addr = FIELD(A_BASE), b_addr = FIELD(B_BASE), out = FIELD(OUT_BASE);
        for (int k = 0; k < ISA_OUTPUT_LOOPS; k++) {
            a_addr += FIELDK(A_STRIDES, k) * o[k];
            b_addr += FIELDK(B_STRIDES, k) * o[k];
            out += FIELDK(OUT_STRIDES, k) * o[k];
        }
        int bits[L_MAX];
        for (i64 l = 0; l < active; l++) {
            i64 x1 = read_s8(spad, a_addr + l) - FIELD(A_ZERO), x2 = read_s8(spad, b_addr + l) - FIELD(B_ZERO);
            i64 pre = FIELD(ZERO_OUT) + round_shift(x1 * (i64)d[ISA_ADD_M1] + x2 * (i64)d[ISA_ADD_M2], FIELD(ADD_SHIFT));
            spad[out + l] = (uint8_t)(int8_t)clip64(pre, -128, 127);
            bits[l] = pre >= -128 && pre <= 127;
        }
        if (r->flags & ISA_FLAG_WRITE_MASK)
            write_mask(r, out - FIELD(OUT_BASE), bits, active);
    }
}

static i64 abs64(i64 a) { return a < 0 ? -a : a; }

/* Whether |row|, |column| and every A and B address of every step stays within 2^30, bounded
 * term by term (each loop index at most its count - 1, a listed index at most LIST_LIMIT - 1),
 * and each reduction step within 2^30, so that accumulate32's 32-bit sums and products cannot
 * overflow. */
static int fits_32_bits(const struct run *r)
{
    const uint32_t *d = r->d;
    const i64 limit = (i64)1 << 30;
    i64 row = abs64(FIELD(A_ROW0)), col = abs64(FIELD(A_COL0)), a = abs64(FIELD(A_BASE)), b = abs64(FIELD(B_BASE));
    for (int k = 0; k < ISA_LOOPS; k++) {
        i64 top = max64(r->counts[k] - 1, 0), listed = k == r->looped ? max64(FIELD(LIST_LIMIT) - 1, top) : top;
        i64 a_top = r->flags & ISA_FLAG_LIST_A ? listed : top, b_top = r->flags & ISA_FLAG_LIST_B ? listed : top;
        if (top >= limit || listed >= limit)
            return 0;
        row += abs64(r->row_coefs[k]) * top;
        col += abs64(r->col_coefs[k]) * top;
        a += abs64(r->a_strides[k]) * a_top;
        b += abs64(r->b_strides[k]) * b_top;
        if (row >= limit || col >= limit || a >= limit || b >= limit)
            return 0;
    }
    i64 row_stride = abs64(FIELD(A_ROW_STRIDE)), col_stride = abs64(FIELD(A_COL_STRIDE));
    if (row_stride >= limit || col_stride >= limit)
        return 0;
    /* a walk also steps once past its loop's end: keep that step within 2^31 too */
    for (int k = 0; k < 3; k++)
        if (abs64(r->step_a[k]) >= limit || abs64(r->step_b[k]) >= limit)
            return 0;
    return a + row_stride * row + col_stride * col < limit;
}

static void execute(struct soft_engine *engine, const uint32_t *d)
{
    struct run r = {.engine = engine, .d = d, .L = engine->lanes, .lanes_total = FIELD(LANES_TOTAL),
                    .chunk_loop = FIELD(CHUNK_LOOP), .flags = FIELD(FLAGS), .looped = list_loop(d),
                    .chunk_listed = list_chunk(d)};
    while ((1 << r.lanes_log2) < r.L)
        r.lanes_log2++;
    for (int k = 0; k < ISA_LOOPS; k++) {
        r.counts[k] = FIELDK(COUNTS, k);
        r.row_coefs[k] = coef(d, ISA_A_ROW_COEFS, k);
        r.col_coefs[k] = coef(d, ISA_A_COL_COEFS, k);
        r.a_strides[k] = FIELDK(A_STRIDES, k);
        r.b_strides[k] = FIELDK(B_STRIDES, k);
    }
    for (int k = 0; k < 3; k++) {
        int loop = ISA_OUTPUT_LOOPS + k;
        r.step_row[k] = r.row_coefs[loop];
        r.step_col[k] = r.col_coefs[loop];
        r.step_a[k] = r.a_strides[loop] + r.row_coefs[loop] * FIELD(A_ROW_STRIDE) + r.col_coefs[loop] * FIELD(A_COL_STRIDE);
        r.step_b[k] = (r.flags & ISA_FLAG_B_ONES) ? 0 : r.b_strides[loop];
    }
    r.fits32 = FIELD(OPCODE) == ISA_MAC && FIELD(MODE) != ISA_SUMS && fits_32_bits(&r);
    if (r.fits32)
        prepare_reduction(&r);
    i64 epilogue = FIELD(EPILOGUE);
    if (FIELD(OPCODE) == ISA_ADD) {
        if (epilogue == ISA_GRADIENT)
            run_gradient(&r);
        else
            run_residual_add(&r);
        return;
    }
    if (needs_params(d)) {
        r.params = ((r.flags & ISA_FLAG_PARAMS_EXTERNAL) ? engine->external : engine->scratchpad) + FIELD(PARAM_BASE);
        r.param_channels = (int32_t)param_count(d);
    }
    if (epilogue == ISA_UPDATE || epilogue == ISA_BIAS_UPDATE) {
        run_update(&r);
    } else if (epilogue == ISA_GRADIENT) {
        run_gradient(&r);
    } else {
        i64 o[ISA_LOOPS] = {0};
        int32_t acc[L_MAX];
        FOR_OUTPUTS(&r, o) {
            accumulate(&r, o, acc);
            write_mac_outputs(&r, o, acc);
        }
    }
}

int soft_engine_run(struct soft_engine *engine, const uint32_t *words, uint32_t count, uint32_t *index)
{
    if (engine->lanes < 8 || engine->lanes > L_MAX || (engine->lanes & (engine->lanes - 1))) {
        *index = 0;
        return ISA_ERR_SHAPE;
    }
    soft_reduce_init();
    uint32_t d[ISA_DESCRIPTOR_WORDS];         /* a copy in the CPU's memory: fields are read often */
    for (uint32_t i = 0; i < count; i++) {
        for (int w = 0; w < ISA_DESCRIPTOR_WORDS; w++)
            d[w] = words[(u64)i * ISA_DESCRIPTOR_WORDS + w];
        if (FIELD(OPCODE) == ISA_END) {
            *index = i;
            return ISA_OK;
        }
        int code = soft_engine_check(engine, d);
        int looped = list_loop(d);
        if (code == ISA_OK && looped >= 0) {
            i64 at = FIELD(LIST_ADDR);
            for (i64 j = 0; j < FIELDK(COUNTS, looped); j++) {
                i64 entry = engine->scratchpad[at + 2 * j] | (i64)engine->scratchpad[at + 2 * j + 1] << 8;
                if (entry >= FIELD(LIST_LIMIT))
                    code = ISA_ERR_LIST_ENTRY;
            }
        }
        if (code != ISA_OK) {
            *index = i;
            return code;
        }
        execute(engine, d);
    }
    *index = count;
    return ISA_ERR_PROGRAM_RANGE;
}
