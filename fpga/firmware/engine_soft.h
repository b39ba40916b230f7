/* The engine's programs run by a CPU: the same descriptors, checks, error codes and bytes as
 * the engine (docs/engine.md) and the golden executor (golden/engine/executor.py), for a board
 * whose logic cannot hold the engine (the iCE40 UP5K, docs/fpga.md). No cycle is modelled.
 *
 * Contract: `soft_engine_run` runs descriptors from `words` (DESCRIPTOR_WORDS little-endian
 * words each, `count` of them) until an END. It returns the error code (0 when an END was
 * reached) and sets *index to the END's index, or to the failing descriptor's; a descriptor
 * that fails its check writes nothing. Running past `count` without an END is
 * ERR_PROGRAM_RANGE at index `count`. Only the scratchpad is written. An engine of more lanes
 * than SOFT_ENGINE_MAX_LANES (or not a power of two from 8) runs nothing: ERR_SHAPE at index 0.
 */
#ifndef SPARSEBP_ENGINE_SOFT_H
#define SPARSEBP_ENGINE_SOFT_H
#include <stdint.h>

/* The lane arrays live on the stack, sized for this many lanes: the firmware defines it as its
   engine's lane count (hw/soc/firmware.py), since a CPU's stack is small. */
#ifndef SOFT_ENGINE_MAX_LANES
#define SOFT_ENGINE_MAX_LANES 64
#endif

struct soft_engine {
    uint8_t *scratchpad;
    uint32_t scratchpad_bytes;
    const uint8_t *external;        /* B operands and parameter tables may be read from here */
    uint32_t external_bytes;
    uint32_t lanes;                 /* L: 8..SOFT_ENGINE_MAX_LANES, a power of two */
    uint32_t param_channels;
};

int soft_engine_check(const struct soft_engine *engine, const uint32_t *descriptor);
int soft_engine_run(struct soft_engine *engine, const uint32_t *words, uint32_t count, uint32_t *index);

#endif
