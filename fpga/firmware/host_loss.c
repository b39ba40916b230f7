/* Host harness for loss.h (tests/test_soc_firmware.py): reads the softmax table, the logit scale
   and cases from stdin, prints per case the exponent, S, d_t, the Q16 loss and the gradient. */
#include <stdio.h>
#include "loss.h"

int main(void) {
    static uint32_t table[256], table_q15[256];
    unsigned scale_q24, cases;
    for (int d = 0; d < 256; d++) {
        if (scanf("%u", &table[d]) != 1)
            return 1;
        table_q15[d] = table[d] << 15;
    }
    if (scanf("%u %u", &scale_q24, &cases) != 2)
        return 1;
    for (unsigned c = 0; c < cases; c++) {
        unsigned classes, label, value;
        int8_t logits[LOSS_MAX_CLASSES];
        uint8_t mask[LOSS_MAX_CLASSES / 8] = {0}, gradient[LOSS_MAX_CLASSES];
        struct loss_terms terms;
        int logit;
        if (scanf("%u %u", &classes, &label) != 2)
            return 1;
        for (unsigned i = 0; i < classes; i++) {
            if (scanf("%d", &logit) != 1)
                return 1;
            logits[i] = (int8_t)logit;
        }
        for (unsigned i = 0; i < classes; i++) {
            if (scanf("%u", &value) != 1)
                return 1;
            mask[i / 8] |= (uint8_t)((value & 1u) << (i % 8));
        }
        softmax_gradient(logits, mask, classes, label, table, table_q15, gradient, &terms);
        printf("%d %u %u %u", terms.exponent, terms.sum, terms.distance, loss_q16(&terms, scale_q24));
        for (unsigned i = 0; i < classes; i++)
            printf(" %d", (int8_t)gradient[i]);
        printf("\n");
    }
    return 0;
}
