/* The CPU's channel selection (docs/numerics.md 8; golden/scheme.py: ChannelSelector, policy
   "dynamic"): one xorshift32 stream (golden/prng.py), and per weight-updated conv, in the job's
   order (ascending conv index), a partial Fisher-Yates shuffle of its c selectable channels,
     for j < k: r = j + next() % (c - j); swap(perm[j], perm[r])
   whose first k entries, sorted ascending, are the selection. A ratio-1 conv selects all of its
   channels and consumes no draws. Shared by the firmware (main.c) and the host test
   (host_select.c, tests/test_soc_firmware.py). */
#ifndef SPARSEBP_SELECT_H
#define SPARSEBP_SELECT_H
#include <stdint.h>

#ifndef SELECT_CODE
#define SELECT_CODE static
#endif

/* One xorshift32 step: x ^= x << 13; x ^= x >> 17; x ^= x << 5. */
static inline uint32_t xorshift32_step(uint32_t x) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

/* The selected channels of one conv, ascending, into out[0..k); `perm` holds c entries of
   scratch. Returns the stream's state after the draws. */
SELECT_CODE uint32_t select_channels(uint32_t state, uint32_t c, uint32_t k, int ratio_one,
                                     uint16_t *perm, uint16_t *out) {
    if (ratio_one) {
        for (uint32_t i = 0; i < c; i++)
            out[i] = (uint16_t)i;
        return state;
    }
    for (uint32_t i = 0; i < c; i++)
        perm[i] = (uint16_t)i;
    for (uint32_t j = 0; j < k; j++) {
        state = xorshift32_step(state);
        uint32_t r = j + state % (c - j);
        uint16_t t = perm[j];
        perm[j] = perm[r];
        perm[r] = t;
    }
    /* insertion sort of the first k into out */
    for (uint32_t i = 0; i < k; i++) {
        uint16_t v = perm[i];
        uint32_t at = i;
        while (at && out[at - 1u] > v) {
            out[at] = out[at - 1u];
            at--;
        }
        out[at] = v;
    }
    return state;
}
#endif
