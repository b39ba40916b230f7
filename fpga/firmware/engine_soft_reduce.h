/* One output vector's reduction in 32-bit arithmetic, the soft engine's inner loop
 * (engine_soft_reduce.c). engine_soft.c fills a `struct reduction` once per descriptor and
 * calls soft_reduce once per output vector with the vector's origin. */
#ifndef SPARSEBP_ENGINE_SOFT_REDUCE_H
#define SPARSEBP_ENGINE_SOFT_REDUCE_H
#include <stdint.h>

struct reduction {
    const uint8_t *spad, *b_mem;            /* A is read from the scratchpad, B from b_mem */
    int32_t rows, cols, a_zero;             /* A's image and zero point */
    int32_t lanes, lanes_log2, lanes_total; /* L (a power of two) and the descriptor's lanes */
    int a_vector, dot, ones;                /* A a row of lanes (else one byte a step), one sum, B all ones */
    int chunk_reduced, chunk_at, chunk_listed;  /* dot mode: the chunk loop is reduction loop 3 + chunk_at */
    /* the reduction loops 3..5: trip counts, and what one step adds to A's row, column and
       address and to B's address */
    int32_t counts[3], step_row[3], step_col[3], step_a[3], step_b[3];
};

/* Builds the quarter-square table; call before soft_reduce (idempotent). */
void soft_reduce_init(void);

/* The vector whose reduction starts at A's row, column and address and B's address (row, col,
 * a, b), `active` lanes (ignored when the chunk loop is reduced): its int32 sums (wrapping),
 * one per lane, or one in dot mode, written to acc[0..lanes-1] (lanes past `active` get 0).
 * Contract: every row, column and address reached, and each plus one more step of its loop,
 * fits in int32 (engine_soft.c's fits_32_bits), every address of a step whose row and column
 * lie inside the image is inside its memory, a_zero is in [-128, 127] and the mode is not SUMS. */
void soft_reduce(const struct reduction *q, int32_t row, int32_t col, int32_t a, int32_t b, int32_t active,
                 int32_t *acc);

#endif
