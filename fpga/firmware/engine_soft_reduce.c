/* One output vector's reduction in 32-bit arithmetic (engine_soft_reduce.h has the contract):
 * the soft engine's inner loop, where a training iteration on a CPU spends most of its cycles.
 *
 * Written for VexRiscv Lite (the iCE40 SoC's CPU, docs/soc.md): its multiply takes 33 cycles,
 * its shifter moves one bit a cycle and every load crosses the shared bus (about 10 cycles), so
 * a product is two table reads (quarter squares, below) and each operand pattern has a loop of
 * its own. (Eight lanes' sums kept in registers, an unrolled loop, saved 0.2%: the bus reads
 * of the operands and the table are the cost.) The results are the golden executor's sums bit
 * for bit on any CPU. */
#include "engine_soft.h"
#include "engine_soft_reduce.h"

/* a b = q(a + b) - q(a - b) with q(x) = floor(x^2 / 4), exact for integers because a + b and
 * a - b are both even or both odd. With a = int8 - zero point in [-255, 255] and b an int8 (or
 * 1), |a + b| and |a - b| are at most 383. */
#define QUARTER_SQUARE_MAX 383
static uint16_t quarter_square_table[2 * QUARTER_SQUARE_MAX + 1];
#define QUARTER_SQUARES (quarter_square_table + QUARTER_SQUARE_MAX)

void soft_reduce_init(void)
{
    if (QUARTER_SQUARES[QUARTER_SQUARE_MAX])
        return;
    for (int32_t x = 0; x <= QUARTER_SQUARE_MAX; x++)
        QUARTER_SQUARES[x] = QUARTER_SQUARES[-x] = (uint16_t)((x * x) >> 2);
}

/* The three reduction loops, each walking row, column and addresses by adding its step (no
 * multiplication), around a body that sees row5, col5, a5, b5 and the indices i[0..2]. A step
 * whose A is padding (row or column outside the image) adds 0 and is skipped. The body is the
 * macro's last argument (variadic, so its commas need no parentheses). */
#define FOR_STEPS(q, ...) { \
    int32_t i[3], row3 = row, col3 = col, a3 = a, b3 = b; \
    uint32_t rows = (uint32_t)(q)->rows, cols = (uint32_t)(q)->cols; \
    for (i[0] = 0; i[0] < (q)->counts[0]; i[0]++, row3 += (q)->step_row[0], col3 += (q)->step_col[0], a3 += (q)->step_a[0], b3 += (q)->step_b[0]) { \
        int32_t row4 = row3, col4 = col3, a4 = a3, b4 = b3; \
        for (i[1] = 0; i[1] < (q)->counts[1]; i[1]++, row4 += (q)->step_row[1], col4 += (q)->step_col[1], a4 += (q)->step_a[1], b4 += (q)->step_b[1]) { \
            int32_t row5 = row4, col5 = col4, a5 = a4, b5 = b4; \
            for (i[2] = 0; i[2] < (q)->counts[2]; i[2]++, row5 += (q)->step_row[2], col5 += (q)->step_col[2], a5 += (q)->step_a[2], b5 += (q)->step_b[2]) { \
                if ((uint32_t)row5 >= rows || (uint32_t)col5 >= cols) \
                    continue; \
                __VA_ARGS__ \
            } \
        } \
    } }

/* One operand pattern's loop (constant flags, so no operand test is left inside it). */
static inline __attribute__((always_inline))
void reduce_lanes(const struct reduction *q, int32_t row, int32_t col, int32_t a, int32_t b, int32_t active,
                  uint32_t *sum, const int a_vector, const int dot, const int ones)
{
    const uint8_t *spad = q->spad, *b_mem = q->b_mem;
    const uint16_t *squares = QUARTER_SQUARES;
    int32_t a_zero = q->a_zero;
    FOR_STEPS(q, {
        if (q->chunk_reduced && !q->chunk_listed) {     /* active_lanes of the reduced chunk index */
            active = q->lanes_total - (i[q->chunk_at] << q->lanes_log2);
            active = active < q->lanes ? active : q->lanes;
        }
        const uint8_t *a_row = spad + a5, *b_row = b_mem + b5;
        int32_t broadcast = a_vector ? 0 : (int8_t)a_row[0] - a_zero;
        if (!a_vector && broadcast == 0)
            continue;
        uint32_t total = 0;
        for (int32_t l = 0; l < active; l++) {
            int32_t x = a_vector ? (int8_t)a_row[l] - a_zero : broadcast;
            int32_t y = ones ? 1 : (int8_t)b_row[l];
            uint32_t product = (uint32_t)((int32_t)squares[x + y] - (int32_t)squares[x - y]);
            if (dot)
                total += product;
            else
                sum[l] += product;
        }
        if (dot)
            sum[0] += total;
    })
}

void soft_reduce(const struct reduction *q, int32_t row, int32_t col, int32_t a, int32_t b, int32_t active,
                 int32_t *acc)
{
    uint32_t sum[SOFT_ENGINE_MAX_LANES];
    for (int32_t l = 0; l < q->lanes; l++)
        sum[l] = 0;
    if (q->dot)
        reduce_lanes(q, row, col, a, b, active, sum, 1, 1, 0);
    else if (q->a_vector && q->ones)
        reduce_lanes(q, row, col, a, b, active, sum, 1, 0, 1);
    else if (q->a_vector)
        reduce_lanes(q, row, col, a, b, active, sum, 1, 0, 0);
    else if (q->ones)
        reduce_lanes(q, row, col, a, b, active, sum, 0, 0, 1);
    else
        reduce_lanes(q, row, col, a, b, active, sum, 0, 0, 0);
    for (int32_t l = 0; l < q->lanes; l++)
        acc[l] = (int32_t)sum[l];
}
