/* The loss step's arithmetic (docs/numerics.md 6.1 and 5), without its memory traffic: the
   softmax cross-entropy gradient of int8 logits in fixed point, times the clamp mask, and the
   reported loss in Q16. main.c uses it on the SoC; tests/test_soc_firmware.py compiles it for
   the host (host_loss.c) and compares it with golden/int_ops.py on thousands of cases.

   LOSS_CODE and PRINT_CODE place the functions (main.c puts them in its hot sections).
   Written for VexRiscv Lite: no division except the ten p_i (the divider takes 33 cycles), no
   shifts by more than a few bits in loops (the shifter does one bit per cycle). */
#ifndef SPARSEBP_LOSS_H
#define SPARSEBP_LOSS_H
#include <stdint.h>

#ifndef LOSS_CODE
#define LOSS_CODE static
#endif
#ifndef PRINT_CODE
#define PRINT_CODE LOSS_CODE
#endif
#define LOSS_MAX_CLASSES 64

struct loss_terms {
    uint32_t sum;          /* S */
    uint32_t distance;     /* d_t = max logit - label's logit */
    int32_t exponent;      /* e of the gradient */
};


/* `table[d]` = T[d], `table_q15[d]` = T[d] << 15; `mask` bit i (byte i/8, LSB first) is the
   clamp mask of logit i; writes `classes` gradient bytes (int8) to `gradient`. */
LOSS_CODE void softmax_gradient(const int8_t *logits, const uint8_t *mask, uint32_t classes,
                                uint32_t label, const uint32_t *table_base,
                                const uint32_t *table_q15_base, uint8_t *gradient,
                                struct loss_terms *terms) {
    int32_t wide[LOSS_MAX_CLASSES];
    int32_t top = -128;
    for (uint32_t i = 0; i < classes; i++)
        if (logits[i] > top)
            top = logits[i];
    const uint32_t *table = table_base + top, *table_q15 = table_q15_base + top;
    uint32_t sum = 0;
    for (uint32_t i = 0; i < classes; i++)
        sum += table[-logits[i]];                     /* T[d_i], d_i = top - l_i */
    /* p_i = (T[d_i] * 2^15 + S // 2) // S; T <= 2^16 and S < 2^26 keep it in 32 bits */
    uint32_t half = sum >> 1;
    int32_t high = 0;
    for (uint32_t i = 0; i < classes; i++) {
        int32_t a = (int32_t)((table_q15[-logits[i]] + half) / sum);
        wide[i] = a;
        if (a > high && i != label)                   /* the label's A is p_t - 2^15, below */
            high = a;
    }
    int32_t low = wide[label] - (1 << 15);            /* the only negative entry */
    wide[label] = low;
    /* gradient quantizer with e_A = -15: k = max(0, bitlen(max|A|) - 7) */
    uint32_t magnitude = (uint32_t)(-low > high ? -low : high), shift = 0;
    for (uint32_t limit = 128u; magnitude >= limit; limit += limit)
        shift++;
    int32_t rounding = shift ? 1 << (shift - 1) : 0;
    uint32_t bit = 1u, mask_byte = 0;
    for (uint32_t i = 0; i < classes; i++) {
        if ((i & 7u) == 0) {
            mask_byte = *mask++;
            bit = 1u;
        }
        int32_t g = (wide[i] + rounding) >> shift;
        if (g > 127)
            g = 127;
        if (g < -127)
            g = -127;
        if (!(mask_byte & bit))                        /* the logits' clamp mask */
            g = 0;
        bit += bit;
        gradient[i] = (uint8_t)g;
    }
    terms->exponent = -15 + (int32_t)shift;
    terms->sum = sum;
    terms->distance = (uint32_t)(top - logits[label]);
}

/* log2(x) in Q16 for x >= 1: integer part from the bit length, fraction bits by squaring. */
PRINT_CODE uint32_t log2_q16(uint32_t x) {
    uint32_t integer = 31u, m = x;              /* normalise: m / 2^31 in [1, 2) */
    while (!(m & 0x80000000u)) {
        m += m;
        integer--;
    }
    uint32_t result = integer << 16;
    for (int bit = 15; bit >= 0; bit--) {
        uint64_t square = (uint64_t)m * m;      /* / 2^62, in [1, 4) */
        if (square >> 63) {
            m = (uint32_t)(square >> 32);
            result |= 1u << bit;
        } else {
            m = (uint32_t)(square >> 31);
        }
    }
    return result;
}

/* The reported loss ln(S / 2^16) + s_l * d_t in Q16 (golden int_ops.softmax_cross_entropy_grad),
   `logit_scale_q24` = s_l * 2^24. */
PRINT_CODE uint32_t loss_q16(const struct loss_terms *terms, uint32_t logit_scale_q24) {
    uint32_t log2_ratio = log2_q16(terms->sum) - (16u << 16);       /* S >= T[0] = 2^16 */
    uint32_t natural = (uint32_t)(((uint64_t)log2_ratio * 45426u) >> 16);   /* ln 2 in Q16 */
    return natural + (uint32_t)(((uint64_t)logit_scale_q24 * terms->distance) >> 8);
}

#endif
