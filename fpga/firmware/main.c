/* Training firmware for the sparsebp SoC (docs/soc.md).

   Reads the training job from flash (hw/soc/job.py), loads the scratchpad preload and the `sr`
   PRNG state, then runs `iterations` training iterations of the compiled model:
     load sample k -> engine forward program -> loss step (docs/numerics.md 6.1: softmax
     cross-entropy gradient in fixed point, times the logits' clamp mask, with its exponent,
     into the scratchpad) -> engine backward program (bias and weight update)
   and prints one line per iteration over the UART. An engine error is reported with the failing
   descriptor's fields and the SoC halts with exit code 1.

   Channel selection (select.h): the CPU draws iteration k+1's channels with its `select`
   xorshift32 stream into RAM while the engine runs iteration k's backward program, and copies
   them (uint16 lists) into the scratchpad with the sample, before the forward program (which
   gathers the selected input channels). A scheme without selection (last layer) has none.

   CPU overhead: the engine idles only while the CPU loads a sample and does the loss step.
   Everything else (formatting the previous iteration's line, the loss value's logarithm,
   sending bytes to the UART) happens while the engine runs. */
#include "soc.h"

#define LOSS_CODE __attribute__((noinline, section(".text.hot.0"))) static
#define PRINT_CODE __attribute__((noinline, section(".text.hot.2"))) static
#include "loss.h"
#define SELECT_CODE __attribute__((noinline, section(".text.select"))) static
#include "select.h"
_Static_assert(JOB_MAX_CLASSES <= LOSS_MAX_CLASSES, "loss.h must hold the job's classes");

/* The instruction cache is 2 KiB, direct-mapped, and a refill takes about 20 cycles a line.
   The code that runs every iteration comes first: `WARM` (also run while the engine is busy, or
   warmed up then, see warm_up()), `HOT` (only while the engine idles), `PRINT` (formatting, while
   the engine runs); boot and error code (`COLD`) go after. The three hot groups are about 2.6
   KiB: printing evicts the first ~600 bytes of the cache, which hold the WARM group. */
#define WARM __attribute__((noinline, section(".text.hot.0")))
#define HOT __attribute__((noinline, section(".text.hot.1")))
#define PRINT __attribute__((noinline, section(".text.hot.2")))
#define COLD __attribute__((noinline, cold, section(".text.cold")))

#define REG(address) (*(volatile uint32_t *)(uintptr_t)(address))
#define BYTE(address) (*(volatile uint8_t *)(uintptr_t)(address))
#define EXIT_DONE 0
#define EXIT_ENGINE_ERROR 1
#define EXIT_BAD_JOB 2

/* The compiler may call these for structure copies; built with -fno-builtin, so the loops
   below are not turned back into calls to themselves. */
void *memset(void *to, int value, unsigned long count) {
    uint8_t *p = to;
    while (count--)
        *p++ = (uint8_t)value;
    return to;
}

void *memcpy(void *to, const void *from, unsigned long count) {
    uint8_t *p = to;
    const uint8_t *q = from;
    while (count--)
        *p++ = *q++;
    return to;
}

static struct job job;
static uint32_t softmax_table[256];          /* T[d] */
static uint32_t softmax_table_q15[256];      /* T[d] << 15: the shifter is iterative (a cycle per bit) */

/* ------------------------------------------------------------------ UART output
   Text is formatted into a RAM buffer through a cursor (`put_*`), published with `out_commit`,
   and moved to the UART FIFO one byte per engine status poll (`uart_pump_one`), so waiting for
   the engine costs no extra cycles and printing never makes the engine wait. The buffer rewinds
   to its start whenever it has drained and the next text might not fit before its end.
   No division anywhere: the divider takes 33 cycles. */
#define OUT_SIZE 2048u
#define OUT_RESERVE 160u                /* the longest text published at once */
static char out_buffer[OUT_SIZE];
static uint32_t out_head, out_tail;

WARM static void uart_pump_one(void) {
    uint32_t tail = out_tail;
    if (tail != out_head && !(REG(SOC_UART_STATUS) & UART_STATUS_FULL)) {
        REG(SOC_UART_TX_DATA) = (uint8_t)out_buffer[tail];
        out_tail = tail + 1u;
    }
}

PRINT static char *out_reserve(void) {
    if (out_head + OUT_RESERVE > OUT_SIZE) {
        while (out_tail != out_head)
            uart_pump_one();
        out_head = out_tail = 0;
    }
    return out_buffer + out_head;
}

PRINT static void out_commit(const char *end) {
    out_head = (uint32_t)(end - out_buffer);
}

PRINT static char *put_str(char *p, const char *s) {
    while (*s)
        *p++ = *s++;
    return p;
}

static const uint32_t powers_of_ten[10] = {1000000000u, 100000000u, 10000000u, 1000000u, 100000u,
                                           10000u, 1000u, 100u, 10u, 1u};

/* Decimal digits from powers_of_ten[first] down, by repeated subtraction; leading zeros
   dropped unless `pad`. */
PRINT static char *put_digits(char *p, uint32_t value, uint32_t first, int pad) {
    for (uint32_t i = first; i < 10u; i++) {
        uint32_t power = powers_of_ten[i];
        char digit = '0';
        while (value >= power) {
            value -= power;
            digit++;
        }
        if (digit != '0' || pad || i == 9u) {
            *p++ = digit;
            pad = 1;
        }
    }
    return p;
}

PRINT static char *put_int(char *p, int32_t value) {
    if (value < 0) {
        *p++ = '-';
        return put_digits(p, 0u - (uint32_t)value, 0, 0);
    }
    return put_digits(p, (uint32_t)value, 0, 0);
}

COLD static void out_str(const char *s) {
    out_commit(put_str(out_reserve(), s));
}

COLD static void out_uint(uint32_t value) {
    out_commit(put_digits(out_reserve(), value, 0, 0));
}

COLD static void out_int(int32_t value) {
    out_commit(put_int(out_reserve(), value));
}

COLD static void out_char(char c) {
    char *p = out_reserve();
    *p++ = c;
    out_commit(p);
}

COLD static void out_hex(uint32_t value) {
    char *p = put_str(out_reserve(), "0x");
    for (int shift = 28; shift >= 0; shift -= 4)
        *p++ = "0123456789abcdef"[(value >> shift) & 15u];
    out_commit(p);
}

COLD static void out_flush(void) {
    while (out_tail != out_head)
        uart_pump_one();
    while (!(REG(SOC_UART_STATUS) & UART_STATUS_IDLE))
        ;
}

COLD static void __attribute__((noreturn)) halt(uint32_t code) {
    out_flush();
    REG(SOC_SYSCTL_HALT) = code;
    for (;;)
        ;
}

/* ------------------------------------------------------------------ memory helpers */
HOT static uint32_t flash_word(uint32_t offset) {
    return REG(SOC_EXTERNAL_BASE + offset);
}

/* Copy `bytes` from flash to the scratchpad; both addresses word-aligned (hw/soc/job.py checks). */
COLD static void flash_to_scratchpad(uint32_t scratchpad_addr, uint32_t flash_offset, uint32_t bytes) {
    volatile uint32_t *to = (volatile uint32_t *)(uintptr_t)(SOC_SCRATCHPAD_BASE + scratchpad_addr);
    volatile uint32_t *from = (volatile uint32_t *)(uintptr_t)(SOC_EXTERNAL_BASE + flash_offset);
    uint32_t words = bytes / 4u, i;
    for (i = 0; i < words; i++)
        to[i] = from[i];
    for (uint32_t b = 4u * words; b < bytes; b++)     /* tail: byte stores (read-merge-write) */
        BYTE(SOC_SCRATCHPAD_BASE + scratchpad_addr + b) = (uint8_t)(from[b / 4u] >> (8u * (b % 4u)));
}

/* Word buffers viewed as bytes: the CPU's shifter is iterative, byte lanes come free. */
typedef union {
    uint32_t word[JOB_MAX_CLASSES / 4 + 2];
    uint8_t byte[4 * (JOB_MAX_CLASSES / 4 + 2)];
} word_buffer;

/* Read the words covering `count` bytes of the scratchpad from `addr`; returns the offset of
   byte `addr` in the buffer. */
HOT static uint32_t scratchpad_read(uint32_t addr, word_buffer *out, uint32_t count) {
    uint32_t first = addr & ~3u, skip = addr & 3u;
    uint32_t words = (skip + count + 3u) / 4u;
    volatile uint32_t *from = (volatile uint32_t *)(uintptr_t)(SOC_SCRATCHPAD_BASE + first);
    for (uint32_t w = 0; w < words; w++)
        out->word[w] = from[w];
    return skip;
}

/* ------------------------------------------------------------------ engine */
#ifdef SOFT_ENGINE
/* Built with SOFT_ENGINE (hw/soc/firmware.py, soft_engine=True), the CPU runs each program
   itself (engine_soft.c) over the engine's scratchpad and external windows, and the engine
   stays idle: engine_start returns when the program has ended, and the status, error and cycle
   words below stand in for the engine's registers (the cycles are the CPU's for the run). */
#include "engine_soft.h"
static uint32_t soft_status, soft_error, soft_cycles;
static uint32_t soft_busy_cycles;        /* all runs' cycles: the engine's idle count is the rest */
#define ENGINE_ERROR_WORD soft_error
#define ENGINE_CYCLES_WORD soft_cycles

HOT static void engine_start(uint32_t program_base) {
    struct soft_engine engine = {(uint8_t *)(uintptr_t)SOC_SCRATCHPAD_BASE, ENGINE_SCRATCHPAD_BYTES,
                                 (const uint8_t *)(uintptr_t)SOC_EXTERNAL_BASE, ENGINE_EXTERNAL_BYTES,
                                 ENGINE_LANES, ENGINE_PARAM_CHANNELS};
    uint32_t count = (ENGINE_EXTERNAL_BYTES - program_base) / (4u * ENGINE_DESCRIPTOR_WORDS), index;
    uint32_t began = REG(SOC_SYSCTL_CYCLES);
    int code = soft_engine_run(&engine, (const uint32_t *)(uintptr_t)(SOC_EXTERNAL_BASE + program_base), count,
                               &index);
    soft_cycles = REG(SOC_SYSCTL_CYCLES) - began;
    soft_busy_cycles += soft_cycles;
    soft_error = (uint32_t)code | index << 16;       /* the engine's error register: code, index << 16 */
    soft_status = ENGINE_STATUS_FINISHED | (code ? ENGINE_STATUS_ERROR : 0u);
}

WARM static uint32_t engine_wait(void) {
    return soft_status;
}
#else
#define ENGINE_ERROR_WORD REG(SOC_ENGINE_ERROR)
#define ENGINE_CYCLES_WORD REG(SOC_ENGINE_CYCLES)

HOT static void engine_start(uint32_t program_base) {
    REG(SOC_ENGINE_PROGRAM_BASE) = program_base;
    REG(SOC_ENGINE_CONTROL) = 1u;
}

WARM static uint32_t engine_wait(void) {
    uint32_t status;
    while (!((status = REG(SOC_ENGINE_STATUS)) & ENGINE_STATUS_FINISHED))
        uart_pump_one();
    return status;
}
#endif

COLD static void __attribute__((noreturn)) engine_failed(const char *phase, uint32_t program_base) {
    uint32_t error = ENGINE_ERROR_WORD;
    uint32_t code = error & 0xffu, index = error >> 16;
    uint32_t at = program_base + index * 4u * ENGINE_DESCRIPTOR_WORDS;
    out_str("engine error in the ");
    out_str(phase);
    out_str(" program: code ");
    out_uint(code);
    out_str(" (");
    out_str(code < ENGINE_ERROR_CODES ? engine_error_names[code] : "unknown");
    out_str(") at descriptor ");
    out_uint(index);
    out_str("\ndescriptor ");
    out_uint(index);
    out_str(" at external ");
    out_hex(at);
    out_str(", non-zero fields:\n");
    for (uint32_t w = 0; w < ENGINE_DESCRIPTOR_WORDS; w++) {
        uint32_t value = flash_word(at + 4u * w);
        if (value) {
            out_str("  ");
            out_str(engine_field_names[w]);
            out_str(" = ");
            out_int((int32_t)value);
            out_char('\n');
        }
    }
    out_str("stopped\n");
    halt(EXIT_ENGINE_ERROR);
}

/* ------------------------------------------------------------------ loss step (numerics 6.1) */


static word_buffer logits_words, mask_words;    /* static: warm_up() reuses the last ones */
static uint32_t logits_skip, mask_skip, last_label;

HOT static void loss_step(uint32_t label, struct loss_terms *terms) {
    uint32_t classes = job.classes;
    word_buffer gradient_words;
    logits_skip = scratchpad_read(job.logits_addr, &logits_words, classes);
    mask_skip = scratchpad_read(job.mask_addr, &mask_words, (classes + 7u) / 8u);
    last_label = label;
    const int8_t *logits = (const int8_t *)logits_words.byte + logits_skip;
    const uint8_t *mask = mask_words.byte + mask_skip;
    softmax_gradient(logits, mask, classes, label, softmax_table, softmax_table_q15,
                     gradient_words.byte, terms);
    /* whole words: the job builder checked that the padding bytes up to the next word are free */
    for (uint32_t i = classes; i & 3u; i++)
        gradient_words.byte[i] = 0;
    volatile uint32_t *to = (volatile uint32_t *)(uintptr_t)(SOC_SCRATCHPAD_BASE + job.gradient_addr);
    uint32_t words = (classes + 3u) / 4u;
    for (uint32_t w = 0; w < words; w++)
        to[w] = gradient_words.word[w];
    REG(SOC_SCRATCHPAD_BASE + job.exponent_addr) = (uint32_t)terms->exponent;
}

/* ------------------------------------------------------------------ channel selection */
static struct select_entry select_table[JOB_MAX_SELECT_CONVS];
static uint32_t select_segment[JOB_MAX_SELECT_CONVS];   /* where each conv's list starts in `selection` */
static uint32_t select_state;
static uint16_t select_perm[JOB_MAX_SELECT_CHANNELS];
/* the next iteration's lists; a conv's list starts at a halfword whose position within a word
   is its scratchpad address's, so the copy moves whole words */
static uint16_t selection[JOB_MAX_LIST_ENTRIES + 2 * JOB_MAX_SELECT_CONVS] __attribute__((aligned(4)));

/* Draw the next iteration's selection into `selection` (the engine may be running). */
__attribute__((noinline, section(".text.select"))) static void select_next(void) {
    uint32_t state = select_state;
    for (uint32_t i = 0; i < job.select_count; i++) {
        const struct select_entry *e = &select_table[i];
        state = select_channels(state, e->channels, e->selected, (int)(e->flags & JOB_SELECT_RATIO_ONE),
                                select_perm, selection + select_segment[i]);
    }
    select_state = state;
}

typedef uint32_t __attribute__((may_alias)) words_alias;

/* Copy the drawn lists into the scratchpad (the engine idle): two entries a word. */
HOT static void copy_lists(void) {
    for (uint32_t i = 0; i < job.select_count; i++) {
        uint32_t at = select_table[i].list_addr, n = select_table[i].selected;
        if (at == JOB_NO_LIST)
            continue;
        const uint16_t *from = selection + select_segment[i];
        uint32_t to = SOC_SCRATCHPAD_BASE + at;
        if ((to & 2u) && n) {
            *(volatile uint16_t *)(uintptr_t)to = *from++;
            to += 2u;
            n--;
        }
        for (; n >= 2u; n -= 2u, to += 4u, from += 2)
            REG(to) = *(const words_alias *)from;
        if (n)
            *(volatile uint16_t *)(uintptr_t)to = *from;
    }
}

/* ------------------------------------------------------------------ iterations */
struct iteration {
    uint32_t index, label, cycles, idle_cycles, forward_cycles, backward_cycles;
    uint32_t sample_cycles, loss_step_cycles;     /* CPU work with the engine idle */
    struct loss_terms loss;
};

static const char *const line_fields[] = {
    "iteration ", ": label ", " loss ", " exponent ", " cycles ", " engine_idle ", " forward ",
    " backward ", " sample ", " loss_step "};

PRINT static void print_iteration(const struct iteration *it) {
    uint32_t loss = loss_q16(&it->loss, job.logit_scale_q24);
    uint32_t whole = loss >> 16, fraction = ((loss & 0xffffu) * 10000u + 32768u) >> 16;
    if (fraction == 10000u) {
        whole++;
        fraction = 0;
    }
    int32_t values[10] = {(int32_t)it->index, (int32_t)it->label, (int32_t)whole, it->loss.exponent,
                          (int32_t)it->cycles, (int32_t)it->idle_cycles, (int32_t)it->forward_cycles,
                          (int32_t)it->backward_cycles, (int32_t)it->sample_cycles,
                          (int32_t)it->loss_step_cycles};
    char *p = out_reserve();
    for (uint32_t i = 0; i < 10u; i++) {
        p = put_int(put_str(p, line_fields[i]), values[i]);
        if (i == 2u) {              /* the loss: four decimals */
            *p++ = '.';
            p = put_digits(p, fraction, 6, 1);
        }
    }
    *p++ = '\n';
    out_commit(p);
}

/* While the engine runs: the last loss step's arithmetic again on its saved inputs, into a
   scratch buffer, to bring softmax_gradient back into the instruction cache after printing. */
PRINT static void warm_up(void) {
    word_buffer scratch;
    struct loss_terms terms;
    softmax_gradient((const int8_t *)logits_words.byte + logits_skip, mask_words.byte + mask_skip,
                     job.classes, last_label, softmax_table, softmax_table_q15, scratch.byte, &terms);
}

static inline __attribute__((always_inline)) uint32_t now(void) { return REG(SOC_SYSCTL_CYCLES); }

/* The cycle counter and the engine's idle counter, read back to back by the same code at both
   ends of an iteration, so the skew between the two readings cancels. */
struct stamp {
    uint32_t cycles, idle;
};

WARM static struct stamp stamp(void) {
    struct stamp now;
    now.cycles = REG(SOC_SYSCTL_CYCLES);
#ifdef SOFT_ENGINE
    now.idle = now.cycles - soft_busy_cycles;
#else
    now.idle = REG(SOC_ENGINE_IDLE_CYCLES);
#endif
    return now;
}

#ifdef SOFT_ENGINE
/* The stack's high-water mark, for the soft-engine firmware, whose lane arrays and deeper calls
   make the stack worth watching (link.ld keeps STACK_FLOOR free only at link time): boot paints the
   free RAM between .bss and the stack with a pattern, finish finds the lowest word the stack
   overwrote and prints `stack: USED of FREE bytes`. A word written with the pattern itself
   would be missed; the figure is a lower bound within that. */
#define STACK_PAINT 0x57ACC0DEu
#define STACK_PAINT_MARGIN 256u       /* below boot's own frame, left unpainted */
extern uint32_t __bss_end[], __stack_top[];

COLD static void paint_stack(void) {
    uint32_t *below = (uint32_t *)((uintptr_t)__builtin_frame_address(0) - STACK_PAINT_MARGIN);
    for (uint32_t *word = __bss_end; word < below; word++)
        *word = STACK_PAINT;
}

COLD static void report_stack(void) {
    uint32_t *word = __bss_end;
    while (word < __stack_top && *word == STACK_PAINT)
        word++;
    out_str("stack: ");
    out_uint((uint32_t)((uintptr_t)__stack_top - (uintptr_t)word));
    out_str(" of ");
    out_uint((uint32_t)((uintptr_t)__stack_top - (uintptr_t)__bss_end));
    out_str(" bytes\n");
}
#endif

/* Everything before the first iteration: the job, the table, the preload, the PRNG seed. */
COLD static void boot(void) {
#ifdef SOFT_ENGINE
    paint_stack();
#endif
    volatile uint32_t *job_words = (volatile uint32_t *)(uintptr_t)SOC_JOB_ADDRESS;
    uint32_t *copy = (uint32_t *)&job;
    for (uint32_t i = 0; i < sizeof(job) / 4u; i++)
        copy[i] = job_words[i];
    if (job.magic != JOB_MAGIC || job.classes == 0 || job.classes > JOB_MAX_CLASSES) {
        out_str("no valid training job at ");
        out_hex(SOC_JOB_ADDRESS);
        out_char('\n');
        halt(EXIT_BAD_JOB);
    }
    for (uint32_t i = 0; i < 256u; i++) {
        softmax_table[i] = flash_word(job.table_offset + 4u * i);
        softmax_table_q15[i] = softmax_table[i] << 15;
    }
    for (uint32_t i = 0; i < job.preload_count; i++) {
        uint32_t entry = job.preload_offset + 12u * i;
        flash_to_scratchpad(flash_word(entry), flash_word(entry + 4u), flash_word(entry + 8u));
    }
    REG(SOC_SCRATCHPAD_BASE + job.prng_addr) = job.sr_seed;
    if (job.select_count > JOB_MAX_SELECT_CONVS) {
        out_str("the job's channel selection exceeds the firmware's buffers\n");
        halt(EXIT_BAD_JOB);
    }
    uint32_t segment = 0;
    for (uint32_t i = 0; i < job.select_count; i++) {
        uint32_t *entry = (uint32_t *)&select_table[i];
        for (uint32_t w = 0; w < 4u; w++)
            entry[w] = flash_word(job.select_offset + 16u * i + 4u * w);
        segment += (segment ^ (select_table[i].list_addr >> 1)) & 1u;   /* same position in a word */
        select_segment[i] = segment;
        segment += select_table[i].channels;   /* a ratio-1 conv writes all c */
        if (select_table[i].channels > JOB_MAX_SELECT_CHANNELS || select_table[i].selected > select_table[i].channels
                || segment > JOB_MAX_LIST_ENTRIES + 2u * JOB_MAX_SELECT_CONVS) {
            out_str("the job's channel selection exceeds the firmware's buffers\n");
            halt(EXIT_BAD_JOB);
        }
    }
    select_state = job.select_seed ? job.select_seed : PRNG_ZERO_SEED_REPLACEMENT;
    select_next();      /* iteration 0's channels */
#ifdef SOFT_ENGINE
    out_str("sparsebp SoC: " SOC_CPU_NAME ", programs run by the CPU for ");
#else
    out_str("sparsebp SoC: " SOC_CPU_NAME ", engine ");
#endif
    out_uint(ENGINE_LANES);
    out_str(" lanes, ");
    out_uint(ENGINE_SCRATCHPAD_BYTES / 1024u);
    out_str(" KiB scratchpad; ");
    out_uint(job.iterations);
    out_str(" training iterations\n");
}

COLD static void __attribute__((noreturn)) finish(void) {
#ifdef SOFT_ENGINE
    report_stack();
#endif
    out_str("done: ");
    out_uint(job.iterations);
    out_str(" iterations\n");
    halt(EXIT_DONE);
}

/* Pause until the testbench clears the flag (the time belongs to no iteration). */
COLD static void pause(void) {
    out_flush();
    REG(SOC_SYSCTL_PAUSE) = 1u;
    while (REG(SOC_SYSCTL_PAUSE) & 1u)
        ;
}

/* The sample's tail bytes when its size is not a multiple of 4 (not the built-in model's case). */
COLD static void copy_tail(uint32_t scratchpad_addr, uint32_t flash_offset, uint32_t bytes) {
    uint32_t whole = bytes & ~3u;
    for (uint32_t b = whole; b < bytes; b++)
        BYTE(SOC_SCRATCHPAD_BASE + scratchpad_addr + b) = BYTE(SOC_EXTERNAL_BASE + flash_offset + b);
}

HOT int main(void) {
    boot();
    /* Two records, alternating: iteration k's line is printed while iteration k+1's forward runs. */
    struct iteration records[2];
    struct iteration *previous = 0;
    volatile uint32_t *input = (volatile uint32_t *)(uintptr_t)(SOC_SCRATCHPAD_BASE + job.input_addr);
    uint32_t sample_offset = job.samples_offset, label_offset = job.labels_offset;
    uint32_t words = job.input_bytes / 4u, stride = job.sample_stride;
    /* twice: the first brings stamp() into the instruction cache (after boot's code), so a miss
       between its two readings does not skew iteration 0's idle count */
    struct stamp started = stamp();
    started = stamp();
    for (uint32_t k = 0; k < job.iterations; k++) {
        struct iteration *current = &records[k & 1u];
        /* -- engine idle from here: the sample */
        volatile uint32_t *from = (volatile uint32_t *)(uintptr_t)(SOC_EXTERNAL_BASE + sample_offset);
        for (uint32_t w = 0; w < words; w++)
            input[w] = from[w];
        if (job.input_bytes & 3u)
            copy_tail(job.input_addr, sample_offset, job.input_bytes);
        copy_lists();
        uint32_t label = flash_word(label_offset);
        engine_start(job.forward_base);
        /* -- engine busy: bookkeeping and the previous line */
        current->sample_cycles = now() - started.cycles;
        current->index = k;
        current->label = label;
        sample_offset += stride;
        label_offset += 4u;
        if (previous) {
            print_iteration(previous);
            warm_up();
        }
        if (engine_wait() & ENGINE_STATUS_ERROR)
            engine_failed("forward", job.forward_base);
        /* -- engine idle: the loss step */
        uint32_t loss_began = now();
        current->forward_cycles = ENGINE_CYCLES_WORD;
        loss_step(label, &current->loss);
        engine_start(job.backward_base);
        current->loss_step_cycles = now() - loss_began;
        /* -- engine busy: the next iteration's channels */
        if (k + 1u < job.iterations)
            select_next();
        if (engine_wait() & ENGINE_STATUS_ERROR)
            engine_failed("backward", job.backward_base);
        struct stamp ended = stamp();
        current->backward_cycles = ENGINE_CYCLES_WORD;
        current->cycles = ended.cycles - started.cycles;
        current->idle_cycles = ended.idle - started.idle;
        previous = current;
        started = ended;
        if (job.flags & JOB_FLAG_PAUSE) {
            print_iteration(previous);
            previous = 0;
            pause();
            warm_up();
            started = stamp();
        }
    }
    if (previous)
        print_iteration(previous);
    finish();
}
