/* The engine's static checks of a descriptor (docs/engine.md, "Checks"), one for one with
 * golden/engine/program.py's `check`, in its order; returns the error code. */
#include "engine_soft_internal.h"

/* (lowest, highest) of base + sum strides[k] * i[k] over the loop box */
static void extent(i64 base, const i64 *strides, const i64 *counts, int n, i64 *lo, i64 *hi)
{
    *lo = *hi = base;
    for (int k = 0; k < n; k++) {
        i64 span = strides[k] * (counts[k] - 1);
        *lo += min64(span, 0);
        *hi += max64(span, 0);
    }
}

int soft_engine_check(const struct soft_engine *engine, const uint32_t *d)
{
    i64 opcode = FIELD(OPCODE), mode = FIELD(MODE), epilogue = FIELD(EPILOGUE), flags = FIELD(FLAGS);
    i64 L = engine->lanes, channels = engine->param_channels, spad = engine->scratchpad_bytes;
    if (opcode != ISA_MAC && opcode != ISA_ADD)
        return ISA_ERR_OPCODE;
    i64 counts[ISA_LOOPS];
    for (int k = 0; k < ISA_LOOPS; k++) {
        counts[k] = FIELDK(COUNTS, k);
        if (counts[k] < 1 || counts[k] > 65535)
            return ISA_ERR_SHAPE;
    }
    i64 lanes_total = FIELD(LANES_TOTAL), chunk_loop = FIELD(CHUNK_LOOP);
    if (lanes_total < 1 || lanes_total > 65535)
        return ISA_ERR_SHAPE;
    if ((flags & ~(i64)ISA_KNOWN_FLAGS) || chunk_loop < 0 || chunk_loop >= ISA_LOOPS)
        return ISA_ERR_SHAPE;
    int looped = list_loop(d);
    i64 list_limit = FIELD(LIST_LIMIT);
    if (looped >= 0) {
        if (opcode != ISA_MAC || epilogue == ISA_GRADIENT || looped >= ISA_OUTPUT_LOOPS
            || coef(d, ISA_A_ROW_COEFS, looped) || coef(d, ISA_A_COL_COEFS, looped)
            || list_limit < 1 || list_limit > 65535 || list_limit > channels || counts[looped] > channels)
            return ISA_ERR_SHAPE;
        if (looped == chunk_loop && !(epilogue == ISA_UPDATE && mode == ISA_ELEMENTWISE && lanes_total == 1))
            return ISA_ERR_SHAPE;
    }
    if (!list_chunk(d) && (-(counts[chunk_loop] - 1) * L + lanes_total < 1
                           || (counts[chunk_loop] - 1) * L >= lanes_total))
        return ISA_ERR_SHAPE;
    i64 a_zero = FIELD(A_ZERO), zero_out = FIELD(ZERO_OUT);
    if (opcode == ISA_MAC) {
        if (mode < 0 || mode > ISA_SUMS || epilogue < 0 || epilogue > ISA_GRADIENT)
            return ISA_ERR_SHAPE;
        if (mode == ISA_DOT && (chunk_loop < ISA_OUTPUT_LOOPS || (epilogue != ISA_RAW32 && epilogue != ISA_GRADIENT)
                                || (flags & ISA_FLAG_SCALE)))
            return ISA_ERR_SHAPE;
        if (mode != ISA_DOT && chunk_loop >= ISA_OUTPUT_LOOPS)
            return ISA_ERR_SHAPE;
        if (mode == ISA_SUMS && (epilogue != ISA_GRADIENT || !(flags & ISA_FLAG_B_ONES) || (flags & ISA_FLAG_SCALE)
                                 || a_zero || counts[3] != 1 || counts[4] != 1 || counts[5] != ISA_SUMS_STEPS
                                 || (lanes_total & (L - 1))))
            return ISA_ERR_SHAPE;
        if (epilogue == ISA_REQUANT && !(zero_out >= -128 && zero_out <= 127 && lanes_total <= channels))
            return ISA_ERR_SHAPE;
        if ((epilogue == ISA_UPDATE || epilogue == ISA_BIAS_UPDATE)
            && (mode == ISA_DOT || lanes_total > channels || ((flags >> ISA_ROUNDING_SHIFT) & 3) == 3))
            return ISA_ERR_SHAPE;
        if (epilogue != ISA_REQUANT && (flags & ISA_FLAG_WRITE_MASK))
            return ISA_ERR_SHAPE;
        if (epilogue != ISA_GRADIENT && (flags & (ISA_FLAG_SCALE | ISA_FLAG_MASK_IN)))
            return ISA_ERR_SHAPE;
        if ((flags & ISA_FLAG_SCALE) && lanes_total > channels)
            return ISA_ERR_SHAPE;
        i64 a_rows = FIELD(A_ROWS), a_cols = FIELD(A_COLS);
        if (!(a_rows >= 1 && a_rows <= 65535 && a_cols >= 1 && a_cols <= 65535 && a_zero >= -128 && a_zero <= 127))
            return ISA_ERR_SHAPE;
    } else {
        i64 b_zero = FIELD(B_ZERO);
        /* the ADD multipliers are unsigned words (up to 2^31) */
        i64 m1 = d[ISA_ADD_M1], m2 = d[ISA_ADD_M2], add_shift = FIELD(ADD_SHIFT);
        if (mode != ISA_ELEMENTWISE || chunk_loop != 0 || counts[3] != 1 || counts[4] != 1 || counts[5] != 1)
            return ISA_ERR_SHAPE;
        if (epilogue != ISA_REQUANT && epilogue != ISA_GRADIENT)
            return ISA_ERR_SHAPE;
        if (!(a_zero >= -128 && a_zero <= 127 && b_zero >= -128 && b_zero <= 127 && zero_out >= -128 && zero_out <= 127))
            return ISA_ERR_SHAPE;
        if (epilogue == ISA_REQUANT && !(m1 <= ((i64)1 << 31) && m2 <= ((i64)1 << 31)
                                         && add_shift >= 1 && add_shift <= 62))
            return ISA_ERR_SHAPE;
        if (epilogue == ISA_GRADIENT && ((flags & (ISA_FLAG_WRITE_MASK | ISA_FLAG_SCALE)) || a_zero || b_zero))
            return ISA_ERR_SHAPE;
        if (epilogue != ISA_GRADIENT && (flags & (ISA_FLAG_SCALE | ISA_FLAG_MASK_IN)))
            return ISA_ERR_SHAPE;
        if (flags & (ISA_FLAG_B_EXTERNAL | ISA_FLAG_B_ONES | ISA_FLAG_PARAMS_EXTERNAL))
            return ISA_ERR_SHAPE;
    }
    int scalar_out = opcode == ISA_MAC && mode == ISA_DOT;
    i64 mask_base = FIELD(MASK_BASE), out_base = FIELD(OUT_BASE);
    i64 out_strides[ISA_OUTPUT_LOOPS];
    for (int k = 0; k < ISA_OUTPUT_LOOPS; k++)
        out_strides[k] = FIELDK(OUT_STRIDES, k);
    if (flags & (ISA_FLAG_WRITE_MASK | ISA_FLAG_MASK_IN)) {
        int misaligned = (L & 7) != 0;
        for (int k = 0; k < ISA_OUTPUT_LOOPS; k++)
            misaligned |= counts[k] > 1 && (out_strides[k] & 7) != 0;
        if (mask_base < 0 || (!scalar_out && misaligned))
            return ISA_ERR_SHAPE;      /* mask vectors start on a byte boundary of the bitmap */
    }
    i64 span = min64(L, lanes_total);
    int a_vector = opcode == ISA_ADD || mode != ISA_BROADCAST;
    /* a listed operand's list loop reaches entry list_limit - 1, whatever its trip count */
    i64 spans_a[ISA_LOOPS + 2], spans_b[ISA_LOOPS], spans_out[ISA_LOOPS];
    for (int k = 0; k < ISA_LOOPS; k++) {
        spans_a[k] = k == looped && (flags & ISA_FLAG_LIST_A) ? list_limit : counts[k];
        spans_b[k] = k == looped && (flags & ISA_FLAG_LIST_B) ? list_limit : counts[k];
        spans_out[k] = k == looped && (flags & ISA_FLAG_LIST_OUT) ? list_limit : counts[k];
    }
    spans_a[ISA_LOOPS] = FIELD(A_ROWS);
    spans_a[ISA_LOOPS + 1] = FIELD(A_COLS);
    i64 a_strides[ISA_LOOPS + 2], b_strides[ISA_LOOPS], lo, hi;
    for (int k = 0; k < ISA_LOOPS; k++) {
        a_strides[k] = FIELDK(A_STRIDES, k);
        b_strides[k] = FIELDK(B_STRIDES, k);
    }
    a_strides[ISA_LOOPS] = FIELD(A_ROW_STRIDE);
    a_strides[ISA_LOOPS + 1] = FIELD(A_COL_STRIDE);
    extent(FIELD(A_BASE), a_strides, spans_a, ISA_LOOPS + 2, &lo, &hi);
    if (lo < 0 || hi + (a_vector ? span - 1 : 0) >= spad)
        return ISA_ERR_A_RANGE;
    if (!(flags & ISA_FLAG_B_ONES)) {
        i64 b_size = (flags & ISA_FLAG_B_EXTERNAL) ? (i64)engine->external_bytes : spad;
        extent(FIELD(B_BASE), b_strides, spans_b, ISA_LOOPS, &lo, &hi);
        if (lo < 0 || hi + span - 1 >= b_size)
            return ISA_ERR_B_RANGE;
    }
    i64 element_bytes = opcode == ISA_MAC && (epilogue == ISA_RAW32 || epilogue == ISA_BIAS_UPDATE) ? 4 : 1;
    i64 out_span = element_bytes * (scalar_out ? 1 : span);
    extent(out_base, out_strides, spans_out, ISA_OUTPUT_LOOPS, &lo, &hi);
    if (lo < 0 || hi + out_span - 1 >= spad)
        return ISA_ERR_OUT_RANGE;
    if ((flags & (ISA_FLAG_WRITE_MASK | ISA_FLAG_MASK_IN)) && mask_base + ((hi - out_base + out_span + 7) >> 3) - 1 >= spad)
        return ISA_ERR_OUT_RANGE;
    if (opcode == ISA_MAC && needs_params(d)) {
        i64 p_size = (flags & ISA_FLAG_PARAMS_EXTERNAL) ? (i64)engine->external_bytes : spad;
        i64 base = FIELD(PARAM_BASE);
        if (base < 0 || base + ISA_PARAM_BYTES_PER_CHANNEL * param_count(d) > p_size)
            return ISA_ERR_PARAM_RANGE;
    }
    i64 exp_addr = FIELD(EXP_ADDR), prng_addr = FIELD(PRNG_ADDR);
    if (opcode == ISA_MAC && (epilogue == ISA_UPDATE || epilogue == ISA_BIAS_UPDATE)
        && !(exp_addr >= 0 && exp_addr <= spad - 4 && prng_addr >= 0 && prng_addr <= spad - 4))
        return ISA_ERR_PARAM_RANGE;
    if (epilogue == ISA_GRADIENT) {
        i64 exp_out = FIELD(EXP_OUT_ADDR), exp2 = opcode == ISA_ADD ? FIELD(EXP2_ADDR) : 0;
        if (!(exp_addr >= 0 && exp_addr <= spad - 4 && exp_out >= 0 && exp_out <= spad - 4
              && exp2 >= 0 && exp2 <= spad - 4))
            return ISA_ERR_PARAM_RANGE;
    }
    if (looped >= 0) {
        i64 list_addr = FIELD(LIST_ADDR);
        if (!(list_addr >= 0 && list_addr + 2 * counts[looped] <= spad))
            return ISA_ERR_PARAM_RANGE;
    }
    return ISA_OK;
}
