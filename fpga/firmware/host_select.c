/* Host harness for select.h (tests/test_soc_firmware.py): reads a seed, a number of rounds and
   the convs (c, k, ratio_one), prints per round each conv's selection on one line, and the
   stream's state after each round. */
#include <stdio.h>
#include "select.h"

int main(void) {
    unsigned seed, rounds, convs;
    static unsigned c[64], k[64], one[64];
    static uint16_t perm[65536], out[65536];
    if (scanf("%u %u %u", &seed, &rounds, &convs) != 3 || convs > 64)
        return 1;
    for (unsigned i = 0; i < convs; i++)
        if (scanf("%u %u %u", &c[i], &k[i], &one[i]) != 3 || c[i] > 65536 || k[i] > c[i])
            return 1;
    uint32_t state = seed ? seed : 0x9E3779B9u;
    for (unsigned round = 0; round < rounds; round++) {
        for (unsigned i = 0; i < convs; i++) {
            state = select_channels(state, c[i], k[i], (int)one[i], perm, out);
            for (unsigned e = 0; e < (one[i] ? c[i] : k[i]); e++)
                printf("%s%u", e ? " " : "", out[e]);
            printf("\n");
        }
        printf("state %u\n", state);
    }
    return 0;
}
