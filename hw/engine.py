"""The engine: fetches descriptors from external memory, checks them, and runs them.

Contract (docs/engine.md): the host loads the scratchpad and the external memory through the
host port, sets `program_base` (external byte address of descriptor 0) and pulses `start`.
`busy` is high from the cycle after `start` until `done` pulses (one cycle), at the end of the
program or on an error; `error` is a level from then until the next `start`, and
`error_code` / `error_index` name the failing check and the descriptor. A descriptor that fails its check writes nothing. `cycles` counts the cycles of
the last run; the trace memory (host space 2) holds, per descriptor, the cycle count at which
it finished.

Timing: a MAC step (one reduction index) issues every cycle. Reads take `D` =
`external_latency_cycles` cycles (scratchpad reads are delayed to match), the product and the
accumulate one cycle each, the requantizer `Requantizer.LATENCY`; after each output vector the
step generator pauses `write_cycles - 1` cycles so the single write port keeps up (a weight
update: until its vectors are `weight_update_cycles` apart, for the L / S shared updaters). With
`config.scratchpad_two_port` it pauses a cycle more after vectors that need a scratchpad port for
their old-value reads or writes, and writes wait in a queue for a cycle without a B read
(docs/engine.md, "The two-port scratchpad"). The cycle model (golden/engine/cycles.py) restates
this schedule and is checked against it.

Host port: `host_space` 0 scratchpad, 1 external memory, 2 trace (read only), 3 activity
monitor (read only: word 0 `high_water`, one past the highest scratchpad byte the engine read or
wrote in the last run, a read counting its whole L-byte row; word 1 `external_reads`, the L-byte
reads of external memory in the last run); `host_addr` is a 32-bit word address. A write
(`host_we` high at a clock edge) reaches external memory at that edge and the scratchpad one
cycle later; a read asked for in any later cycle sees it. `host_rdata` is valid
`HOST_READ_LATENCY` (2) cycles after `host_addr`: the scratchpad registers the host port's
address before its block RAMs (hw/banked_memory.py), and the other spaces match it. The host
port is for use while the engine is idle.

Clocks: `sync`; with `config.scratchpad_pumped` also `fast`, at twice `sync`'s frequency with
rising edges on `sync`'s, for the scratchpad's block RAMs (hw/banked_memory.py). The pumped
scratchpad returns A and B reads a cycle later than the plain one (its `read_latency`), so the
engine delays them one stage less, and needs `D >= 4` (golden/engine/config.py).
"""
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from golden.engine import program as isa
from golden.engine.config import EngineConfig

from .banked_memory import BankedMemory
from .requantizer import Requantizer, clamped_round_shift, round_shift, saturate
from .shared_product import SharedProduct
from .weight_updater import BiasUpdater, WeightUpdater
from .xorshift_vector import jump_outputs

TRACE_DEPTH = 1024
# A row of the channel-list memory: the list entry (a channel index) and its offsets, the entry
# times the list loop's A, B and output strides, multiplied once as the list loads so the issue
# addresses sum straight from the memory's output. fpga/fit.py sizes the memory from it.
LIST_ROW = data.StructLayout({"entry": unsigned(16), "a": signed(32), "b": signed(32), "out": signed(32)})
# For memories whose reads never use a word written in the same cycle: the trace (written as a
# descriptor ends, read by the host when idle), the list and parameter memories (written in
# LIST and PARAMS, read from RUN on), the external window (written by the host when idle). It
# tells yosys a read/write collision is a don't-care, so it builds no logic to resolve one
# (which sat on the paths into and out of those block RAMs). Simulation keeps read-first.
NO_RW_CHECK = {"no_rw_check": 1}
ZERO_SEED = 0x9E3779B9
DRAIN_EXTRA = 12          # cycles after the last step's data leaves the accumulator
GRADIENT_WAIT = 10        # after pass 1's last step: D + 1 + this cycles, then k, then e: cycles.GRADIENT_TURN


def balanced_sum(terms):
    """The sum of `terms` as a tree of adders, log2(n) deep (Python's `sum` chains n - 1)."""
    terms = list(terms)
    while len(terms) > 1:
        paired = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        terms = paired + terms[len(terms) - len(terms) % 2:]
    return terms[0]


def field(desc, name, index=0):
    return desc[isa.FIELD_OFFSETS[name] + index]


class Engine(wiring.Component):
    # Cycles from `host_addr` to `host_rdata` (module docstring).
    HOST_READ_LATENCY = 2

    def __init__(self, config: EngineConfig, external_init: bytes = b""):
        """`external_init`: the external memory's contents at configuration (a bitstream's flash
        image, fpga/board_soc.py); the host port writes it otherwise."""
        if len(external_init) > config.external_bytes:
            raise ValueError(f"an external image of {len(external_init)} bytes does not fit the "
                             f"{config.external_bytes}-byte external memory")
        self.config, self.external_init = config, bytes(external_init)
        super().__init__({
            "start": In(1), "program_base": In(32),
            "busy": Out(1), "done": Out(1), "error": Out(1),
            "error_code": Out(8), "error_index": Out(16), "cycles": Out(32),
            "host_space": In(2), "host_addr": In(30), "host_wdata": In(32), "host_we": In(1),
            "host_rdata": Out(32),
        })

    # Writes waiting for the two-port scratchpad's port 2: each vector's pause gives it at least
    # as many cycles without a B read as the vector writes, so a few vectors' worth suffice.
    WRITE_QUEUE_DEPTH = 16

    def _write_queue(self, m, spad, write, port2_taken, empty):
        """The two-port scratchpad's write queue. `write` (address, data, byte enables) is the
        writer's request of this cycle; the scratchpad registers it and writes at port 2 in the
        next cycle, where B's read issued from `port2_taken` (this cycle's B read of the
        scratchpad) would use the same port. So a write goes to the scratchpad straight away
        when the queue is empty and `port2_taken` is low; otherwise it joins the queue, whose
        oldest entry goes in the next cycle with `port2_taken` low. Writes keep their order.
        `empty` is driven high while nothing waits (the sequencer's drain waits for it)."""
        addr, data, enable = write
        entry = Cat(addr, data, enable)
        queue = m.submodules.write_queue = SyncFIFO(width=len(entry), depth=self.WRITE_QUEUE_DEPTH)
        free = ~port2_taken
        direct = ~queue.r_rdy & free
        m.d.comb += [queue.w_data.eq(entry), queue.w_en.eq(enable.any() & ~direct),
                     queue.r_en.eq(free), empty.eq(~queue.r_rdy)]
        head = queue.r_data
        head_addr, head_data = head[:len(addr)], head[len(addr):len(addr) + len(data)]
        head_enable = head[len(addr) + len(data):]
        with m.If(direct):
            m.d.comb += [spad.write_addr.eq(addr), spad.write_data.eq(data), spad.write_enable.eq(enable)]
        with m.Elif(queue.r_rdy & free):
            m.d.comb += [spad.write_addr.eq(head_addr), spad.write_data.eq(head_data),
                         spad.write_enable.eq(head_enable)]

    def elaborate(self, platform):
        cfg = self.config
        L = cfg.lanes
        lane_bits = L.bit_length() - 1
        D = cfg.external_latency_cycles
        m = Module()

        def delayed(value, cycles, name):
            """`value` through `cycles` registers (named name_d0, name_d1, ...)."""
            for i in range(cycles):
                reg = Signal.like(value, name=f"{name}_d{i}")
                m.d.sync += reg.eq(value)
                value = reg
            return value

        # The scratchpad registers its host port and write (after splitting them into bank rows)
        # itself: the engine presents the next values of what used to be its own registers.
        spad = m.submodules.scratchpad = BankedMemory(L, cfg.scratchpad_rows, read_ports=3,
                                                         pumped=cfg.scratchpad_pumped,
                                                         two_port=cfg.scratchpad_two_port,
                                                         registered_host_and_write=True)
        ext = m.submodules.external = BankedMemory(L, cfg.external_rows, read_ports=2, no_rw_check=True,
                                                   init=self.external_init)
        spad_a, spad_b, spad_host = spad.read_port(0), spad.read_port(1), spad.read_port(2)
        ext_b, ext_host = ext.read_port(0), ext.read_port(1)
        trace = m.submodules.trace = memory.Memory(shape=32, depth=TRACE_DEPTH, init=[], attrs=NO_RW_CHECK)
        trace_w = trace.write_port()
        trace_r = trace.read_port()

        # ---------------------------------------------------------------- host port
        # Every space answers HOST_READ_LATENCY cycles after the address: the scratchpad's host
        # port registers its address itself, the other spaces read from a registered copy.
        host_space_r = delayed(self.host_space, self.HOST_READ_LATENCY, "host_space")
        host_byte = Cat(Const(0, 2), self.host_addr)
        host_addr_r = Signal.like(self.host_addr)
        m.d.sync += host_addr_r.eq(self.host_addr)
        # The update epilogues read old values on the host port: the address the scratchpad
        # registers in cycle c - 1 for its read in cycle c ("old-value reads" below).
        old_read_next = Signal(32)
        # The two-port scratchpad's port 1 serves A or the host port, so the host port reads only
        # when asked: the host's reads while idle, the old-value reads while busy.
        old_read_active = Signal()
        m.d.comb += [spad_host.addr.eq(Mux(self.busy, old_read_next, host_byte)),
                     spad_host.en.eq(~self.busy | old_read_active if cfg.scratchpad_two_port else 1),
                     ext_host.addr.eq(Cat(Const(0, 2), host_addr_r)), ext_host.en.eq(1),
                     trace_r.addr.eq(host_addr_r)]
        # The old values' words as the epilogues take them (two-port: read D cycles earlier and
        # held, "old-value reads" below).
        old_data = delayed(spad_host.data, D, "old_data") if cfg.scratchpad_two_port else spad_host.data
        high_water = Signal(32)        # the activity monitor, see "monitor" below
        external_reads = Signal(32)
        monitor_word = Signal()
        m.d.sync += monitor_word.eq(host_addr_r[0])
        with m.Switch(host_space_r):
            with m.Case(0):
                m.d.comb += self.host_rdata.eq(spad_host.data[:32])
            with m.Case(1):
                m.d.comb += self.host_rdata.eq(ext_host.data[:32])
            with m.Case(2):
                m.d.comb += self.host_rdata.eq(trace_r.data)
            with m.Default():
                m.d.comb += self.host_rdata.eq(Mux(monitor_word, external_reads, high_water))

        # ---------------------------------------------------------------- descriptor registers
        desc = [Signal(32, name=f"desc{i}") for i in range(isa.DESCRIPTOR_WORDS)]

        def f(name, index=0):
            return field(desc, name, index)

        def fs(name, index=0):
            return field(desc, name, index).as_signed()

        opcode, mode, epilogue, flags = f("opcode"), f("mode"), f("epilogue"), f("flags")
        chunk_loop, lanes_total = f("chunk_loop"), f("lanes_total")
        counts = [f("counts", k) for k in range(isa.LOOPS)]
        is_add = opcode == isa.ADD
        b_external = flags[0]
        b_ones = flags[1]
        write_mask = flags[2]
        params_external = flags[3]
        scale = flags[6]
        mask_in = flags[7]
        gradient = epilogue == isa.GRADIENT          # MAC: quantize the accumulators; ADD: gradient sum
        residual_add = is_add & ~gradient
        requant = ~is_add & (epilogue == isa.REQUANT)
        raw32 = ~is_add & (epilogue == isa.RAW32)
        weight_update = ~is_add & (epilogue == isa.UPDATE)
        bias_update = ~is_add & (epilogue == isa.BIAS_UPDATE)
        updates = weight_update | bias_update
        needs_params = requant | updates | (~is_add & gradient & scale)
        rounding = flags[isa.ROUNDING_SHIFT:isa.ROUNDING_SHIFT + 2]
        dot = ~is_add & (mode == isa.DOT)
        sums = ~is_add & (mode == isa.SUMS)          # accumulators loaded from int32 sums (A), no products
        # Channel lists: the list loop's index i addresses A, B and the output as list[i].
        list_code = flags[isa.LIST_SHIFT:isa.LIST_SHIFT + 3]
        list_on = list_code != 0
        list_loop = Signal(3)
        m.d.comb += list_loop.eq(list_code - 1)
        list_is_chunk = list_on & (list_loop == chunk_loop)      # one lane, channel = list entry
        list_a_on, list_b_on, list_out_on = flags[11], flags[12], flags[13]   # operands addressed through it
        list_limit = f("list_limit")
        param_count = Signal(32)
        m.d.comb += param_count.eq(Mux(list_is_chunk, list_limit, lanes_total))
        a_vector = is_add | (mode != isa.BROADCAST)

        def coef(name, k):
            return f(name)[isa.COEF_BITS * k: isa.COEF_BITS * (k + 1)].as_signed()

        # ---------------------------------------------------------------- control state
        index = Signal(16)            # descriptor index
        state_count = Signal(range(D + 3))
        exponent = Signal(signed(32))  # e_y of the gradient an update descriptor applies
        exponent2 = Signal(signed(32))  # GRADIENT sums: the exponent of the B input
        sr_state = Signal(32)          # the `sr` xorshift32 stream while an update runs
        words_per_read = L // 4            # 32-bit words in one L-byte read
        fetch_issue = Signal(range(isa.DESCRIPTOR_WORDS + words_per_read + 1))
        fetch_pipe = [Signal(7, name=f"fetch_word{i}") for i in range(D)]   # word index + 1 (0: none)
        error_code = Signal(8)
        m.d.comb += [self.error_code.eq(error_code), self.error_index.eq(index)]
        cycles = Signal(32)
        m.d.comb += self.cycles.eq(cycles)
        with m.If(self.busy):
            m.d.sync += cycles.eq(cycles + 1)

        # Sequential range check: 17 terms stride * (count - 1), one per cycle.
        # (a listed operand's list loop reaches entry list_limit - 1 whatever its trip count)
        def span_counts(listed):
            return [Mux(listed & list_on & (list_loop == k), list_limit, counts[k]) if k < isa.OUTPUT_LOOPS
                    else counts[k] for k in range(6)]
        a_spans, b_spans, out_spans = span_counts(list_a_on), span_counts(list_b_on), span_counts(list_out_on)
        terms = ([(fs("a_strides", k), a_spans[k], 0) for k in range(6)]
                 + [(fs("a_row_stride"), f("a_rows"), 0), (fs("a_col_stride"), f("a_cols"), 0)]
                 + [(fs("b_strides", k), b_spans[k], 1) for k in range(6)]
                 + [(fs("out_strides", k), out_spans[k], 2) for k in range(3)])
        # Two pipeline stages, each a short path: a term's operands are selected and registered
        # (`term` is the one being selected), then multiplied and registered (`span`). `term`
        # starts at 0 in FETCH's last cycle, when the descriptor is complete, so RANGE's cycle i
        # still applies term i and the schedule is the cycle model's.
        term = Signal(range(len(terms) + 1))
        term_stride = Signal(signed(32))
        term_count = Signal(32)
        term_operand = Signal(2)
        with m.Switch(term):
            for i, (s, n, which) in enumerate(terms):
                with m.Case(i):
                    m.d.comb += [term_stride.eq(s), term_count.eq(n), term_operand.eq(which)]
        sel_stride = Signal(signed(32))
        sel_count_m1 = Signal(17)
        sel_operand = Signal(2)
        sel_valid = Signal()
        m.d.sync += [sel_stride.eq(term_stride), sel_count_m1.eq((term_count - 1)[:17]),
                     sel_operand.eq(term_operand), sel_valid.eq(term < len(terms))]
        span = Signal(signed(64))
        span_operand, span_valid = Signal(2, name="span_operand"), Signal(name="span_valid")
        m.d.sync += [span.eq(sel_stride * sel_count_m1.as_signed()), span_operand.eq(sel_operand),
                     span_valid.eq(sel_valid)]
        lo = [Signal(signed(64), name=f"lo{i}") for i in range(3)]
        hi = [Signal(signed(64), name=f"hi{i}") for i in range(3)]

        # ---------------------------------------------------------------- static field checks
        count_bad = Signal()
        m.d.comb += count_bad.eq(Cat(*[(n == 0) | (n[16:] != 0) for n in counts]).any()
                                 | (lanes_total == 0) | (lanes_total[16:] != 0))
        chunk_count = Signal(32)
        with m.Switch(chunk_loop):
            for k in range(6):
                with m.Case(k):
                    m.d.comb += chunk_count.eq(counts[k])
        shape_bad = Signal()
        list_row_coef = Signal(signed(isa.COEF_BITS))
        list_col_coef = Signal(signed(isa.COEF_BITS))
        list_count = Signal(32)            # entries in the list: the list loop's trip count
        with m.Switch(list_loop):
            for k in range(isa.OUTPUT_LOOPS):
                with m.Case(k):
                    m.d.comb += [list_row_coef.eq(coef("a_row_coefs", k)), list_col_coef.eq(coef("a_col_coefs", k)),
                                 list_count.eq(counts[k])]
        zero_ok = lambda v: (v.as_signed() >= -128) & (v.as_signed() <= 127)
        out_stride_bad = Cat(*[(fs("out_strides", k)[:3] != 0) & (counts[k] > 1) for k in range(3)]).any()
        with m.If(count_bad | ((flags & (0xFFFFFFFF ^ isa.KNOWN_FLAGS)) != 0) | (chunk_loop >= isa.LOOPS)):
            m.d.comb += shape_bad.eq(1)
        with m.Elif(list_on & (is_add | gradient | (list_loop >= isa.OUTPUT_LOOPS) | (list_row_coef != 0)
                               | (list_col_coef != 0) | (list_limit == 0) | (list_limit > 65535)
                               | (list_limit > cfg.param_channels) | (list_count > cfg.param_channels))):
            m.d.comb += shape_bad.eq(1)
        with m.Elif(list_is_chunk & ~(weight_update & (mode == isa.ELEMENTWISE) & (lanes_total == 1))):
            m.d.comb += shape_bad.eq(1)
        with m.Elif(~list_is_chunk & (((chunk_count - 1) << lane_bits) >= lanes_total)):
            m.d.comb += shape_bad.eq(1)
        with m.Elif(~is_add):
            with m.If((mode > isa.SUMS) | (epilogue > isa.GRADIENT)):
                m.d.comb += shape_bad.eq(1)
            with m.Elif(sums & (~gradient | ~b_ones | scale | (f("a_zero") != 0) | (counts[3] != 1)
                                | (counts[4] != 1) | (counts[5] != isa.SUMS_STEPS)
                                | (lanes_total[:lane_bits] != 0))):
                m.d.comb += shape_bad.eq(1)
            with m.Elif(dot & ((chunk_loop < isa.OUTPUT_LOOPS) | ~(raw32 | gradient) | scale)):
                m.d.comb += shape_bad.eq(1)
            with m.Elif(~dot & (chunk_loop >= isa.OUTPUT_LOOPS)):
                m.d.comb += shape_bad.eq(1)
            with m.Elif(requant & ~(zero_ok(f("zero_out")) & (lanes_total <= cfg.param_channels))):
                m.d.comb += shape_bad.eq(1)
            with m.Elif(updates & (dot | (lanes_total > cfg.param_channels) | (rounding == 3))):
                m.d.comb += shape_bad.eq(1)
            with m.Elif(~requant & write_mask):
                m.d.comb += shape_bad.eq(1)
            with m.Elif(~gradient & (scale | mask_in)):
                m.d.comb += shape_bad.eq(1)
            with m.Elif(scale & (lanes_total > cfg.param_channels)):
                m.d.comb += shape_bad.eq(1)
            with m.Elif((fs("a_rows") < 1) | (fs("a_cols") < 1) | (fs("a_rows") > 65535)
                        | (fs("a_cols") > 65535) | ~zero_ok(f("a_zero"))):
                m.d.comb += shape_bad.eq(1)
            with m.Elif((write_mask | mask_in) & ((~dot & out_stride_bad) | (fs("mask_base") < 0))):
                m.d.comb += shape_bad.eq(1)
        with m.Else():
            with m.If((mode != isa.ELEMENTWISE) | (chunk_loop != 0)
                      | Cat(*[n != 1 for n in counts[3:]]).any()):
                m.d.comb += shape_bad.eq(1)
            with m.Elif((epilogue != isa.REQUANT) & ~gradient):
                m.d.comb += shape_bad.eq(1)
            with m.Elif(~(zero_ok(f("a_zero")) & zero_ok(f("b_zero")) & zero_ok(f("zero_out")))):
                m.d.comb += shape_bad.eq(1)
            with m.Elif(~gradient & ((f("add_m1") > 2 ** 31) | (f("add_m2") > 2 ** 31)
                                     | (f("add_shift") < 1) | (f("add_shift") > 62))):
                m.d.comb += shape_bad.eq(1)
            with m.Elif(gradient & ((write_mask | scale) | (f("a_zero") != 0) | (f("b_zero") != 0))):
                m.d.comb += shape_bad.eq(1)
            with m.Elif(~gradient & (scale | mask_in)):
                m.d.comb += shape_bad.eq(1)
            with m.Elif(flags & (isa.FLAG_B_EXTERNAL | isa.FLAG_B_ONES | isa.FLAG_PARAMS_EXTERNAL) != 0):
                m.d.comb += shape_bad.eq(1)
            with m.Elif((write_mask | mask_in) & (out_stride_bad | (fs("mask_base") < 0))):
                m.d.comb += shape_bad.eq(1)

        # Registered every cycle: DECODE reads the value of a descriptor complete since FETCH's
        # last cycle, and the deep compare tree above ends at a flip-flop.
        shape_bad_seen = Signal()
        m.d.sync += shape_bad_seen.eq(shape_bad)

        lane_span = Signal(17)
        m.d.comb += lane_span.eq(Mux(lanes_total < L, lanes_total, L))
        spad_size, ext_size = cfg.scratchpad_bytes, cfg.external_bytes
        b_size = Mux(b_external, ext_size, spad_size)
        out_bytes = Signal(17)
        m.d.comb += out_bytes.eq(Mux(raw32 | bias_update,
                                     Mux(dot, 4, lane_span << 2), Mux(dot, 1, lane_span)))
        p_size = Mux(params_external, ext_size, spad_size)
        # RANGE's last cycle compares the span registers with limits of the descriptor alone,
        # and takes the checks of descriptor fields alone as a code: both are registered every
        # cycle (the descriptor is stable from FETCH's last cycle), so that cycle's path is one
        # 64-bit compare per operand and the priority among them. With x = the bytes after the
        # highest start: hi + x >= size  <=>  hi >= size - x; and the mask bytes' last address
        # mask_base + ((hi2 - out_base + out_bytes + 7) >> 3) - 1 >= size  <=>
        # (hi2 + mask_bias) >> 3 >= size + 1 - mask_base.
        a_limit, b_limit, out_limit = (Signal(signed(34), name=n) for n in ("a_limit", "b_limit", "out_limit"))
        mask_bias, mask_limit = Signal(signed(34), name="mask_bias"), Signal(signed(34), name="mask_limit")
        b_checked, mask_checked = Signal(name="b_checked"), Signal(name="mask_checked")
        m.d.sync += [a_limit.eq(spad_size - Mux(a_vector, lane_span - 1, 0)),
                     b_limit.eq(b_size - (lane_span - 1)),
                     out_limit.eq(spad_size - (out_bytes - 1)),
                     mask_bias.eq(out_bytes + 7 - fs("out_base")),
                     mask_limit.eq(spad_size + 1 - fs("mask_base")),
                     b_checked.eq(~b_ones), mask_checked.eq(write_mask | mask_in)]
        # (four stages: the channel count, the table's size, its end, then the compares; ready
        # long before RANGE's last cycle reads the code)
        param_bytes = Signal(40, name="param_bytes")
        param_end, list_end = Signal(signed(40), name="param_end"), Signal(signed(40), name="list_end")
        m.d.sync += [param_bytes.eq(delayed(param_count, 1, "param_count_early") * isa.PARAM_BYTES_PER_CHANNEL),
                     param_end.eq(fs("param_base") + param_bytes),
                     list_end.eq(fs("list_addr") + (list_count << 1))]
        field_range_code = Signal(8)
        with m.If(needs_params & ((fs("param_base") < 0) | (param_end > p_size))):
            m.d.sync += field_range_code.eq(isa.ERR_PARAM_RANGE)
        with m.Elif(updates & ((fs("exp_addr") < 0) | (fs("exp_addr") > spad_size - 4)
                               | (fs("prng_addr") < 0) | (fs("prng_addr") > spad_size - 4))):
            m.d.sync += field_range_code.eq(isa.ERR_PARAM_RANGE)
        with m.Elif(gradient & ((fs("exp_addr") < 0) | (fs("exp_addr") > spad_size - 4)
                                | (fs("exp_out_addr") < 0) | (fs("exp_out_addr") > spad_size - 4)
                                | (is_add & ((fs("exp2_addr") < 0) | (fs("exp2_addr") > spad_size - 4))))):
            m.d.sync += field_range_code.eq(isa.ERR_PARAM_RANGE)
        with m.Elif(list_on & ((fs("list_addr") < 0) | (list_end > spad_size))):
            m.d.sync += field_range_code.eq(isa.ERR_PARAM_RANGE)
        with m.Else():
            m.d.sync += field_range_code.eq(0)
        range_code = Signal(8)
        with m.If((lo[0] < 0) | (hi[0] >= a_limit)):
            m.d.comb += range_code.eq(isa.ERR_A_RANGE)
        with m.Elif(b_checked & ((lo[1] < 0) | (hi[1] >= b_limit))):
            m.d.comb += range_code.eq(isa.ERR_B_RANGE)
        with m.Elif((lo[2] < 0) | (hi[2] >= out_limit)):
            m.d.comb += range_code.eq(isa.ERR_OUT_RANGE)
        with m.Elif(mask_checked & (((hi[2] + mask_bias) >> 3) >= mask_limit)):
            m.d.comb += range_code.eq(isa.ERR_OUT_RANGE)
        with m.Else():
            m.d.comb += range_code.eq(field_range_code)

        # ---------------------------------------------------------------- decoded fields, registered
        # Everything from here on runs after DECODE, so it reads registered copies of the fields
        # decoded above (loaded every cycle; the descriptor is complete from FETCH's last cycle,
        # and DECODE is the cycle after): the decode logic and its fanout then start no path of
        # the loop nest, the datapath or the epilogues. The checks above use the live decode.
        live = dict(is_add=is_add, gradient=gradient, residual_add=residual_add, requant=requant, raw32=raw32,
                    dot=dot, sums=sums, weight_update=weight_update, bias_update=bias_update, updates=updates,
                    needs_params=needs_params, a_vector=a_vector, list_on=list_on, list_loop=list_loop,
                    list_is_chunk=list_is_chunk, list_count=list_count, param_count=param_count)
        (is_add, gradient, residual_add, requant, raw32, dot, sums, weight_update, bias_update, updates, needs_params,
         a_vector, list_on, list_loop, list_is_chunk, list_count, param_count) = (
            delayed(value, 1, name) for name, value in live.items())
        counts_m1 = [delayed((counts[k] - 1)[:16], 1, f"count{k}_m1") for k in range(6)]

        # ---------------------------------------------------------------- loop nest (AGU)
        idx = [Signal(16, name=f"idx{k}") for k in range(6)]
        last = [idx[k] == counts_m1[k] for k in range(6)]
        inner_last = [Cat(*last[k + 1:]).all() if k < 5 else Const(1) for k in range(6)]
        all_last = last[0] & inner_last[0]
        first_reduction = (idx[3] == 0) & (idx[4] == 0) & (idx[5] == 0)
        last_reduction = last[3] & last[4] & last[5]

        eff_a = [Signal(signed(32), name=f"eff_a{k}") for k in range(6)]
        # Their products of descriptor fields, registered every cycle so no path holds both a
        # multiplier and the sums after it: the descriptor is stable from FETCH's last cycle,
        # 19 cycles before RANGE's last loads eff_a and a_origin from them.
        row_steps = [Signal(signed(32), name=f"a_row_step{k}") for k in range(6)]
        col_steps = [Signal(signed(32), name=f"a_col_step{k}") for k in range(6)]
        origin_row, origin_col = Signal(signed(32), name="origin_row"), Signal(signed(32), name="origin_col")
        m.d.sync += [row_steps[k].eq(coef("a_row_coefs", k) * fs("a_row_stride")) for k in range(6)]
        m.d.sync += [col_steps[k].eq(coef("a_col_coefs", k) * fs("a_col_stride")) for k in range(6)]
        m.d.sync += [origin_row.eq(fs("a_row0") * fs("a_row_stride")),
                     origin_col.eq(fs("a_col0") * fs("a_col_stride"))]
        a_origin = Signal(signed(32))
        pa = [Signal(signed(32), name=f"pa{k}") for k in range(6)]
        pb = [Signal(signed(32), name=f"pb{k}") for k in range(6)]
        po = [Signal(signed(32), name=f"po{k}") for k in range(3)]
        prow = [Signal(signed(20), name=f"prow{k}") for k in range(6)]
        pcol = [Signal(signed(20), name=f"pcol{k}") for k in range(6)]
        step = Signal()
        bubble = Signal(3)
        write_cycles = Signal(3)
        # Steps of the current output vector so far, saturating at S (weight_update_cycles,
        # below): a weight update's vectors must end at least S cycles apart for the shared
        # weight updaters, so a reduction of R < S steps pauses S - R cycles after it.
        vector_steps = Signal(range(cfg.weight_update_cycles + 1))
        steps_so_far = Signal.like(vector_steps)
        m.d.comb += steps_so_far.eq(Mux(first_reduction, 1, Mux(vector_steps == cfg.weight_update_cycles,
                                                               vector_steps, vector_steps + 1)))
        m.d.comb += write_cycles.eq(Mux(gradient, 1, Mux(is_add | requant, Mux(write_mask, 2, 1),
                                                         Mux(dot | weight_update, 1, 4))))

        with m.If(step):
            for k in range(6):
                with m.If(inner_last[k]):
                    with m.If(last[k]):
                        m.d.sync += [idx[k].eq(0), pa[k].eq(0), pb[k].eq(0), prow[k].eq(0), pcol[k].eq(0)]
                        if k < 3:
                            m.d.sync += po[k].eq(0)
                    with m.Else():
                        m.d.sync += [idx[k].eq(idx[k] + 1), pa[k].eq(pa[k] + eff_a[k]),
                                     pb[k].eq(pb[k] + fs("b_strides", k)),
                                     prow[k].eq(prow[k] + coef("a_row_coefs", k)),
                                     pcol[k].eq(pcol[k] + coef("a_col_coefs", k))]
                        if k < 3:
                            m.d.sync += po[k].eq(po[k] + fs("out_strides", k))

        # Each list row holds the entry and its three offsets (LIST_ROW), multiplied when the list
        # is loaded: the issue addresses then sum straight from the memory's output instead of
        # through three products after it.
        list_mem = m.submodules.list_mem = memory.Memory(shape=LIST_ROW, depth=cfg.param_channels,
                                                         init=[], attrs=NO_RW_CHECK)
        list_w = list_mem.write_port()
        list_r = list_mem.read_port()
        list_index = Signal(16)
        list_inner_last = Signal()         # this step ends the list loop's current index
        with m.Switch(list_loop):
            for k in range(isa.OUTPUT_LOOPS):
                with m.Case(k):
                    m.d.comb += list_inner_last.eq(inner_last[k])
        with m.Switch(list_loop):
            for k in range(isa.OUTPUT_LOOPS):
                with m.Case(k):
                    m.d.comb += list_index.eq(idx[k])
        # The entry of the current list index: read one cycle ahead (a bubble precedes every new
        # index, so during a step the read port's data is the current index's entry).
        m.d.comb += list_r.addr.eq(list_index)
        list_value = list_r.data.entry
        # the list loop's strides, registered (descriptor fields alone: settled long before LIST)
        stride_a, stride_b, stride_out = Signal(signed(32)), Signal(signed(32)), Signal(signed(32))
        with m.Switch(list_loop):
            for k in range(isa.OUTPUT_LOOPS):
                with m.Case(k):
                    m.d.sync += [stride_a.eq(fs("a_strides", k)), stride_b.eq(fs("b_strides", k)),
                                 stride_out.eq(fs("out_strides", k))]
        list_a, list_b, list_out = list_r.data.a, list_r.data.b, list_r.data.out

        def through_list(offsets, listed, operand_on):
            return [Mux(operand_on & list_on & (list_loop == k), listed, o) if k < isa.OUTPUT_LOOPS else o
                    for k, o in enumerate(offsets)]

        row = Signal(signed(24))
        col = Signal(signed(24))
        m.d.comb += [row.eq(balanced_sum([fs("a_row0")] + prow)), col.eq(balanced_sum([fs("a_col0")] + pcol))]
        a_in_bounds = (row >= 0) & (row < fs("a_rows")) & (col >= 0) & (col < fs("a_cols"))
        a_addr = Signal(32)
        b_addr = Signal(32)
        out_addr = Signal(32)
        m.d.comb += [a_addr.eq(balanced_sum([a_origin] + through_list(pa, list_a, list_a_on))),
                     b_addr.eq(balanced_sum([fs("b_base")] + through_list(pb, list_b, list_b_on))),
                     out_addr.eq(balanced_sum([fs("out_base")] + through_list(po, list_out, list_out_on)))]
        chunk_index = Signal(16)
        with m.Switch(chunk_loop):
            for k in range(6):
                with m.Case(k):
                    m.d.comb += chunk_index.eq(idx[k])
        remaining = Signal(signed(18))
        m.d.comb += remaining.eq(lanes_total[:17] - Mux(list_is_chunk, 0, chunk_index << lane_bits))
        # the parameter RAM row and lane slot of lane 0 (list-chunk mode: of the listed channel)
        param_row = Signal(16)
        param_slot = Signal(range(L))
        m.d.comb += [param_row.eq(Mux(list_is_chunk, list_value >> lane_bits, chunk_index)),
                     param_slot.eq(Mux(list_is_chunk, list_value[:lane_bits], 0))]
        active = Signal(range(L + 1))
        m.d.comb += active.eq(Mux(remaining >= L, L, remaining[:lane_bits + 1]))

        # ---------------------------------------------------------------- parameter memories
        param_rows = cfg.param_channels // L
        bias_mem = m.submodules.bias_mem = memory.Memory(shape=32 * L, depth=param_rows, init=[], attrs=NO_RW_CHECK)
        mult_mem = m.submodules.mult_mem = memory.Memory(shape=32 * L, depth=param_rows, init=[], attrs=NO_RW_CHECK)
        shift_mem = m.submodules.shift_mem = memory.Memory(shape=8 * L, depth=param_rows, init=[], attrs=NO_RW_CHECK)
        param_w = [mem.write_port(granularity=g) for mem, g in ((bias_mem, 32), (mult_mem, 32), (shift_mem, 8))]
        param_r = [mem.read_port() for mem in (bias_mem, mult_mem, shift_mem)]
        param_kind = Signal(2)
        param_channel = Signal(range(cfg.param_channels + 1))

        # ---------------------------------------------------------------- read issue
        # Port B serves descriptor fetch, parameter loads and the B operand, in that order of phases.
        b_read_addr = Signal(32)
        b_read_en = Signal()
        b_read_external = Signal()
        # Reads are issued from registers one cycle after the step that asks for them, and the
        # data delay below is one stage shorter, so operands still arrive D cycles after their
        # step. The address sums then have a whole cycle, and the memories' address inputs come
        # straight from flip-flops (the pumped scratchpad reads A and B at its closing edge).
        # A read now sees the write of its step's cycle too; no
        # valid program reads what that write touches (a descriptor's outputs never overlap
        # its inputs, and the previous descriptor's writes have drained).
        issue_a_addr = Signal(len(spad_a.addr))
        issue_a_en = Signal()
        issue_b_addr = Signal(max(len(spad_b.addr), len(ext_b.addr)))
        issue_b_en = Signal()
        issue_b_external = Signal()
        m.d.sync += [issue_a_addr.eq(a_addr), issue_a_en.eq(step),
                     issue_b_addr.eq(b_read_addr), issue_b_en.eq(b_read_en),
                     issue_b_external.eq(b_read_external)]
        m.d.comb += [spad_a.addr.eq(issue_a_addr), spad_a.en.eq(issue_a_en),
                     spad_b.addr.eq(issue_b_addr), spad_b.en.eq(issue_b_en & ~issue_b_external),
                     ext_b.addr.eq(issue_b_addr), ext_b.en.eq(issue_b_en & issue_b_external)]

        # Read data is delayed so every operand arrives D cycles after its step (the x stage);
        # "_pre" is the stage before, where the multiplier's operands are formed into registers.
        b_pre = Signal(8 * L)
        m.d.comb += b_pre.eq(Mux(delayed(b_read_external, D - 1, "b_src_d"),
                                 delayed(ext_b.data, D - 2 - ext.read_latency(0), "ext_b"),
                                 delayed(spad_b.data, D - 2 - spad.read_latency(1), "spad_b")))
        a_pre = delayed(spad_a.data, D - 2 - spad.read_latency(0), "spad_a")
        b_data = delayed(b_pre, 1, "b_data")
        a_data = delayed(a_pre, 1, "a_data")

        # Step metadata, D cycles later ("x_" = operand stage).
        x_valid = delayed(step, D, "step")
        x_first = delayed(first_reduction, D, "first")
        x_last = delayed(last_reduction, D, "last")
        x_active = delayed(active, D, "active")
        x_out = delayed(out_addr, D, "out")
        x_chunk = delayed(param_row, D, "chunk")
        x_slot = delayed(param_slot, D, "slot")

        # ---------------------------------------------------------------- multiply ("p_" stage)
        # The operands (zero point, padding, inactive lanes, B of ones) are formed a stage early
        # into registers, so the x stage holds only the int8 products.
        pre_in_bounds = delayed(a_in_bounds, D - 1, "pre_in_bounds")
        pre_active = delayed(active, D - 1, "pre_active")
        lane_on = Signal(L)
        m.d.comb += lane_on.eq((Const(1, L + 1) << pre_active) - 1)
        a_zero = f("a_zero")[:9].as_signed()
        p_prod = [Signal(signed(18), name=f"p_prod{l}") for l in range(L)]
        # SUMS: lane l loads the int32 at byte 4 (l mod L/4) of the row its vector reads at
        # reduction step l div L/4, from the x stage's data into p_load, beside the products;
        # `quarter` counts a vector's steps at the x stage
        p_load = [Signal(signed(32), name=f"p_load{l}") for l in range(L)]
        x_in_bounds = delayed(a_in_bounds, D, "x_in_bounds")
        x_lane_on = Signal(L)
        m.d.comb += x_lane_on.eq((Const(1, L + 1) << x_active) - 1)
        quarter = Signal(2)
        quarter_now = Signal(2)
        m.d.comb += quarter_now.eq(Mux(x_first, 0, quarter + 1))
        with m.If(x_valid):
            m.d.sync += quarter.eq(quarter_now)
        per_row = L // 4
        add_x1 = [Signal(signed(10), name=f"add_x1_{l}") for l in range(L)]
        add_x2 = [Signal(signed(10), name=f"add_x2_{l}") for l in range(L)]
        for l in range(L):
            a_byte = Mux(a_vector, a_pre[8 * l: 8 * l + 8], a_pre[:8]).as_signed()
            a_val, b_val = Signal(signed(10), name=f"x_a{l}"), Signal(signed(8), name=f"x_b{l}")
            m.d.sync += [a_val.eq(Mux(pre_in_bounds & lane_on[l], a_byte - a_zero, 0)),
                         b_val.eq(Mux(b_ones, 1, b_pre[8 * l: 8 * l + 8].as_signed()))]
            word = a_data[32 * (l % per_row): 32 * (l % per_row) + 32].as_signed()
            m.d.sync += p_load[l].eq(Mux(sums & x_in_bounds & x_lane_on[l] & (quarter_now == l // per_row), word, 0))
            m.d.sync += [p_prod[l].eq(a_val * b_val),
                         add_x1[l].eq(a_data[8 * l: 8 * l + 8].as_signed() - a_zero),
                         add_x2[l].eq(b_data[8 * l: 8 * l + 8].as_signed() - f("b_zero")[:9].as_signed())]
        p_valid = Signal(); p_first = Signal(); p_last = Signal()
        p_active = Signal.like(x_active); p_out = Signal(32); p_chunk = Signal(16); p_slot = Signal.like(x_slot)
        m.d.sync += [p_valid.eq(x_valid), p_first.eq(x_first), p_last.eq(x_last), p_active.eq(x_active),
                     p_out.eq(x_out), p_chunk.eq(x_chunk), p_slot.eq(x_slot)]

        # ---------------------------------------------------------------- accumulate
        acc = [Signal(signed(32), name=f"acc{l}") for l in range(L)]
        dot_sum = Signal(signed(32))
        m.d.comb += dot_sum.eq(sum(p_prod))
        with m.If(p_valid):
            for l in range(L):
                addend = dot_sum if l == 0 else 0
                value = Mux(sums, p_load[l], Mux(dot, addend, p_prod[l]))
                m.d.sync += acc[l].eq(Mux(p_first, value, acc[l] + value))
        # Epilogue input ("e_" stage): the finished accumulators, one cycle after the last add.
        e_valid = Signal(); e_active = Signal.like(x_active); e_out = Signal(32); e_slot = Signal.like(x_slot)
        m.d.sync += [e_valid.eq(p_valid & p_last), e_active.eq(p_active), e_out.eq(p_out), e_slot.eq(p_slot)]
        # The parameter rows at the e stage. With the plain scratchpad they are read a stage early
        # (from the x stage's chunk) into registers, so the e stage's products and adders start
        # at a flip-flop, not at a block RAM's output (5.61 ns clock-to-out on the ECP5, the head
        # of the longest `sync` path); the values are the same, since the rows are written only
        # in PARAMS, which has drained before RUN. The pumped scratchpad's clock is bound by its
        # `fast` paths, not by these, and it keeps the netlist its boards' placement seeds were
        # found for (fpga/boards.py ROUTED_SEEDS): its rows are read at p, used at e.
        if cfg.scratchpad_pumped:
            m.d.comb += [param_r[i].addr.eq(p_chunk) for i in range(3)]
            bias_row, mult_row, shift_row = (port.data for port in param_r)
        else:
            m.d.comb += [param_r[i].addr.eq(x_chunk) for i in range(3)]
            bias_row, mult_row, shift_row = (Signal(len(port.data), name=name) for port, name in
                                             zip(param_r, ("bias_row", "mult_row", "shift_row")))
            m.d.sync += [row.eq(port.data) for row, port in zip((bias_row, mult_row, shift_row), param_r)]
        e_x1 = [Signal(signed(10), name=f"e_x1_{l}") for l in range(L)]
        e_x2 = [Signal(signed(10), name=f"e_x2_{l}") for l in range(L)]
        m.d.sync += [e_x1[l].eq(add_x1[l]) for l in range(L)]
        m.d.sync += [e_x2[l].eq(add_x2[l]) for l in range(L)]

        # ---------------------------------------------------------------- requantize (and add)
        rq_y = Signal(8 * L)
        rq_mask = Signal(L)
        rq_valid = Signal()
        requantizers = []
        for l in range(L):
            rq = Requantizer(shared_product=True)
            m.submodules[f"requantizer{l}"] = rq
            requantizers.append(rq)
            m.d.comb += [rq.valid.eq(e_valid & ~is_add), rq.acc.eq(acc[l]),
                         rq.bias.eq(bias_row[32 * l: 32 * l + 32].as_signed()),
                         rq.multiplier.eq(mult_row[32 * l: 32 * l + 32]),
                         rq.shift.eq(shift_row[8 * l: 8 * l + 6]),
                         rq.zero_out.eq(fs("zero_out")[:8])]
            # Residual add (numerics 4.3): the same latency as the requantizer.
            total = Signal(signed(44), name=f"add_total{l}")
            m.d.sync += total.eq(e_x1[l] * f("add_m1") + e_x2[l] * f("add_m2"))
            pre = Signal(signed(48), name=f"add_pre{l}")
            m.d.sync += pre.eq(fs("zero_out") + round_shift(total, f("add_shift")[:6]))
            add_pre = delayed(pre, Requantizer.LATENCY - 2, f"add_pre{l}")
            y = Mux(is_add, saturate(add_pre, -128, 127)[:8], rq.y)
            in_range = Mux(is_add, (add_pre >= -128) & (add_pre <= 127), rq.in_range)
            m.d.comb += [rq_y[8 * l: 8 * l + 8].eq(y), rq_mask[l].eq(in_range)]
        m.d.comb += rq_valid.eq(delayed(e_valid & (residual_add | requant), Requantizer.LATENCY, "rq_valid"))
        rq_active = delayed(e_active, Requantizer.LATENCY, "rq_active")
        rq_out = delayed(e_out, Requantizer.LATENCY, "rq_out")

        # ---------------------------------------------------------------- gradient epilogue
        # numerics 5's quantizer in two passes over the loop nest (docs/engine.md, "Gradients").
        # g1 (e+1): v = acc * factor (MAC) or the aligned sum of the two int8 inputs (ADD);
        # the mask byte read at e on the host port arrives. g2 (e+2): pass 1 folds max|v| over
        # the active lanes into `amax`; pass 2 forms clamp(round_shift(v, k), -127, 127) * mask.
        grad_pass1 = Signal()          # high while the first pass runs
        amax = Signal(48)
        grad_k = Signal(range(64))
        grad_e = Signal(signed(32))
        # Alignment of a gradient sum: the lower exponent's input may be rounded (right shift,
        # at most 8 matters for int8), the higher one's shifted up by up to 23. Registered: the
        # exponents are read in STATE, D + 2 cycles or more before the first e stage uses them.
        higher_a = exponent > exponent2
        diff = Signal(33)
        m.d.comb += diff.eq(Mux(higher_a, exponent - exponent2, exponent2 - exponent))
        swap = Signal()
        round_low = Signal(4)
        left = Signal(5)
        m.d.sync += [swap.eq(higher_a),
                     round_low.eq(Mux(diff > 31, 8, Mux(diff > 23, Mux(diff - 23 > 8, 8, diff - 23), 0))),
                     left.eq(Mux(diff > 23, 23, diff[:5]))]
        # each input's own shifts, a stage later (so no shifter starts at a multiplexer)
        x1_right, x2_right = Signal(4), Signal(4)
        x1_left, x2_left = Signal(5), Signal(5)
        m.d.sync += [x1_right.eq(Mux(swap, 0, round_low)), x2_right.eq(Mux(swap, round_low, 0)),
                     x1_left.eq(Mux(swap, left, 0)), x2_left.eq(Mux(swap, 0, left))]
        sum_exponent = Mux(swap, exponent, exponent2) - left
        # registered: the exponents are read in STATE, long before GRADIENT_EXPONENT writes e
        grad_e_in = Signal(signed(32))
        m.d.sync += grad_e_in.eq(Mux(is_add, sum_exponent, exponent + fs("exp_offset")))
        m.d.comb += grad_e.eq(grad_e_in + grad_k)
        g1_valid = Signal(); g1_active = Signal.like(x_active); g1_out = Signal(32)
        g1_v = [Signal(signed(48), name=f"g1_v{l}") for l in range(L)]
        m.d.sync += [g1_valid.eq(e_valid & gradient), g1_active.eq(Mux(dot, 1, e_active)), g1_out.eq(e_out)]
        # The scaled accumulators come from the lane's shared product (below), registered like g1.
        g1_scaled = Signal()
        m.d.sync += g1_scaled.eq(scale & ~is_add)
        scale_requests = []
        for l in range(L):
            factor = mult_row[32 * l: 32 * l + 16]
            # the two inputs aligned a stage early (at e, from the p stage's registers), so g1
            # holds only their sum
            x1, x2 = Signal(signed(34), name=f"e_aligned_x1_{l}"), Signal(signed(34), name=f"e_aligned_x2_{l}")
            m.d.sync += [x1.eq(round_shift(add_x1[l], x1_right) << x1_left),
                         x2.eq(round_shift(add_x2[l], x2_right) << x2_left)]
            unscaled = Signal(signed(48), name=f"g1_unscaled{l}")
            m.d.sync += unscaled.eq(Mux(is_add, x1 + x2, acc[l]))
            scale_requests.append((e_valid & gradient & scale & ~is_add, acc[l], factor, unscaled))
        mask_offset = e_out - fs("out_base")
        g1_mask_shift = Signal(3)
        m.d.sync += g1_mask_shift.eq(Mux(dot, mask_offset[:3], 0))
        g1_mask = Signal(L)
        m.d.comb += g1_mask.eq(Mux(mask_in, old_data[:L] >> g1_mask_shift, (1 << L) - 1))
        lane_on_g1 = (Const(1, L + 1) << g1_active) - 1
        # Pass 1's fold of max|v| into `amax`, pipelined: magnitudes (g1 + 1), the lanes folded
        # in halves, one 48-bit compare per stage up to 16 lanes (two beyond, so the fold keeps
        # within 4 stages), the last pair's maximum registered, then into `amax`. At 8 lanes
        # `amax` is final at g1 + 5 and bitlen(amax) (below, two stages) at g1 + 7; k is taken
        # D + GRADIENT_WAIT + 1 cycles after pass 1's last step, which is g1 + 8 (g1 is D + 3
        # after it). 16, 32 and 64 lanes: g1 + 8, 7 and 7.
        magnitude = [Signal(48, name=f"magnitude{l}") for l in range(L)]
        m.d.sync += [magnitude[l].eq(Mux(g1_valid & grad_pass1 & lane_on_g1[l],
                                         Mux(g1_v[l] < 0, -g1_v[l], g1_v[l]), 0)[:48]) for l in range(L)]
        level = magnitude
        compares_per_stage = 1 if L <= 16 else 2
        while len(level) > 1:
            for _ in range(compares_per_stage):
                if len(level) > 1:
                    level = [Mux(a > b, a, b) for a, b in zip(level[::2], level[1::2])]
            halves = [Signal(48, name=f"fold{len(level)}_{i}") for i in range(len(level))]
            m.d.sync += [h.eq(v) for h, v in zip(halves, level)]
            level = halves
        with m.If(level[0] > amax):
            m.d.sync += amax.eq(level[0])
        # Pass 2: y = clamp(round_shift(v, k), -127, 127) (numerics 5), the clamp decided by
        # the bound 255 * 2^k (clamped_round_shift), registered once k is known. k <= 41
        # (bitlen(amax) <= 48); the bound's k is capped there anyway: |2v| < 2^48 never
        # reaches 255 * 2^41.
        g2_valid = Signal(); g2_active = Signal.like(x_active); g2_out = Signal(32)
        g2_y = Signal(8 * L)
        y_bound = Signal(signed(50))
        m.d.sync += [g2_valid.eq(g1_valid & ~grad_pass1), g2_active.eq(g1_active), g2_out.eq(g1_out),
                     y_bound.eq(Const(255, 9) << Mux(grad_k > 41, 41, grad_k))]
        for l in range(L):
            y = clamped_round_shift(g1_v[l], grad_k, 127, y_bound)
            m.d.sync += g2_y[8 * l: 8 * l + 8].eq(Mux(g1_mask[l], y[:8], 0))
        # k = max(0, bitlen(amax) - 7); bitlen in two registered stages, per byte of amax then
        # the highest byte with a bit set (see the fold above for when each is final)
        byte_any = Signal(6)
        byte_len = [Signal(4, name=f"amax_byte_len{i}") for i in range(6)]
        for i in range(6):
            byte = amax[8 * i: 8 * i + 8]
            m.d.sync += byte_any[i].eq(byte.any())
            for b in range(8):           # read only where byte_any says a bit is set
                with m.If(byte[b]):
                    m.d.sync += byte_len[i].eq(b + 1)
        amax_bits = Signal(range(49))
        with m.If(byte_any[5]):
            m.d.sync += amax_bits.eq(40 + byte_len[5])
        for i in reversed(range(5)):
            with m.Elif(byte_any[i]):
                m.d.sync += amax_bits.eq(8 * i + byte_len[i])
        with m.Else():
            m.d.sync += amax_bits.eq(0)

        # ---------------------------------------------------------------- update epilogues
        # Weight update: read the old weight row at e; S = weight_update_cycles groups of G = L / S
        # lanes go through the G weight updaters at u1 .. u1 + S - 1 (u1 = e + 1), each group's
        # accumulators, factors and shifts shifted down to lanes 0..G-1 of the u_ registers, the
        # old row on the host port at u1 and held for the later groups. The new weights are
        # collected into `upd_new`, which goes to the writer one cycle after the last group
        # leaves the updaters. The sequencer keeps vectors S cycles apart (`vector_steps`), so
        # the u_ registers are free again when the next vector arrives. The `sr` stream steps
        # once per active lane of each group, in lane order: lane l still gets the draw
        # T^(l+1) s of the vector's state s, as with one updater per lane (numerics 8).
        S = cfg.weight_update_cycles
        G = L // S
        u_valid = Signal(); u_group = Signal(range(S)); u_active = Signal.like(x_active); u_out = Signal(32)
        u_acc = Signal(32 * L); u_mult = Signal(32 * L); u_shift = Signal(8 * L); u_weights = Signal(8 * L)
        with m.If(e_valid & weight_update):
            m.d.sync += [u_valid.eq(1), u_group.eq(0), u_active.eq(e_active), u_out.eq(e_out),
                         u_acc.eq(Cat(*acc)), u_mult.eq(mult_row >> (e_slot * 32)),
                         u_shift.eq(shift_row >> (e_slot * 8))]
        with m.Elif(u_valid & (u_group != S - 1)):
            m.d.sync += [u_group.eq(u_group + 1), u_acc.eq(u_acc >> (32 * G)), u_mult.eq(u_mult >> (32 * G)),
                         u_shift.eq(u_shift >> (8 * G))]
        with m.Else():
            m.d.sync += u_valid.eq(0)
        # the old row: on the host port for the first group, then from u_weights
        old_weights = Mux(u_group == 0, old_data, u_weights)
        m.d.sync += u_weights.eq(old_weights >> (8 * G))
        # the stream steps over this group's active lanes: min(G, active - group * G), at least 0
        group_base = Signal(range(L + 1))
        m.d.comb += group_base.eq(u_group * G)
        lanes_left = Signal(range(L + 1))
        m.d.comb += lanes_left.eq(Mux(u_active > group_base, u_active - group_base, 0))
        draws = jump_outputs(sr_state, G)
        with m.If(u_valid & (rounding == isa.ROUND_STOCHASTIC)):
            with m.Switch(lanes_left):
                for k in range(1, G):
                    with m.Case(k):
                        m.d.sync += sr_state.eq(draws[k - 1])
                with m.Case(*range(G, L + 1)):
                    m.d.sync += sr_state.eq(draws[G - 1])
        weight_updaters = []

        def fraction_bits(shift_byte):
            return saturate(shift_byte[:6].as_unsigned() - exponent, -128, 127)[:8].as_signed()

        for j in range(G):
            wu = WeightUpdater(shared_product=True)
            m.submodules[f"weight_updater{j}"] = wu
            weight_updaters.append(wu)
            m.d.comb += [wu.valid.eq(u_valid), wu.weight.eq(old_weights[8 * j: 8 * j + 8].as_signed()),
                         wu.grad.eq(u_acc[32 * j: 32 * j + 32].as_signed()), wu.multiplier.eq(u_mult[32 * j: 32 * j + 32]),
                         wu.fraction_bits.eq(fraction_bits(u_shift[8 * j: 8 * j + 8])),
                         wu.rounding.eq(rounding), wu.random.eq(draws[j])]
        upd_new = Signal(8 * L)
        done_group = delayed(u_group, WeightUpdater.LATENCY, "upd_group")
        with m.If(weight_updaters[0].out_valid):
            with m.Switch(done_group):
                for q in range(S):
                    with m.Case(q):
                        m.d.sync += upd_new.word_select(q, 8 * G).eq(Cat(*[wu.new_weight for wu in weight_updaters]))
        upd_valid = delayed(weight_updaters[0].out_valid & (done_group == S - 1), 1, "upd_valid")
        upd_active = delayed(u_active, WeightUpdater.LATENCY + 1, "upd_active")
        upd_out = delayed(u_out, WeightUpdater.LATENCY + 1, "upd_out")

        # Bias update, streamed by rows: a scratchpad row holds L/4 old int32 biases, so L/4
        # updaters take row q's lanes q*L/4.. as it arrives on the host port (read at e+q, there
        # at e+q+1) and their results are collected into `bias_new`, complete at e+5+LATENCY as
        # if L units had started together at e+5. Vectors start at least 4 cycles apart (four
        # write cycles), so the operands captured at e stay until row 3 has used them at e+4.
        per_row = L // 4
        bias_phase = Signal(3)         # rows still to read
        bias_out = Signal(32)
        job_acc = Signal(32 * L); job_mult = Signal(32 * L); job_shift = Signal(8 * L)
        with m.If(e_valid & bias_update):
            m.d.sync += [bias_phase.eq(3), bias_out.eq(e_out),
                         job_acc.eq(Cat(*acc)), job_mult.eq(mult_row), job_shift.eq(shift_row)]
        with m.Elif(bias_phase != 0):
            m.d.sync += bias_phase.eq(bias_phase - 1)
        # Old-value reads: the host port's address for its read in cycle c is the mask byte of a
        # gradient vector ending at e, the output row of another vector ending at e, else bias
        # row 4 - bias_phase. It is formed in c - 1 from the p stage (e_valid and e_out are
        # p_valid & p_last and p_out a cycle later) and the bias registers' next values, and the
        # scratchpad registers it (with its bank rows) at the edge between: the pumped
        # scratchpad reads it at the middle edge of c, half a cycle after that register.
        #
        # With the two-port scratchpad, port 1 is A's while steps run: the same reads are made D
        # cycles earlier, in the pause after the vector's last step (the step generator leaves
        # it: "pause" below), from the step's own signals delayed one and two cycles instead of
        # the p and e stages, and their words are held D cycles (`old_data`) so the epilogues
        # see them when they did before.
        if cfg.scratchpad_two_port:
            last_step = step & last_reduction
            read_p, read_p_out = delayed(last_step, 1, "old_p_valid"), delayed(out_addr, 1, "old_p_out")
            read_e, read_e_out = delayed(last_step, 2, "old_e_valid"), delayed(out_addr, 2, "old_e_out")
            read_phase, read_bias_out = Signal(3), Signal(32)
            with m.If(read_e & bias_update):
                m.d.sync += [read_phase.eq(3), read_bias_out.eq(read_e_out)]
            with m.Elif(read_phase != 0):
                m.d.sync += read_phase.eq(read_phase - 1)
            # rows 0 and 1 at the p and e equivalents, rows 2 and 3 in phases 3 and 2
            m.d.comb += old_read_active.eq((read_p & (updates | (gradient & mask_in)))
                                           | ((read_e | read_phase[1]) & bias_update))
        else:
            read_p, read_p_out, read_e, read_e_out = p_valid & p_last, p_out, e_valid, e_out
            read_phase, read_bias_out = bias_phase, bias_out
        with m.If(read_p & gradient):
            m.d.comb += old_read_next.eq(fs("mask_base") + ((read_p_out - fs("out_base")) >> 3))
        with m.Elif(read_p):
            m.d.comb += old_read_next.eq(read_p_out)
        with m.Elif(read_e & bias_update):
            m.d.comb += old_read_next.eq(read_e_out + L)
        with m.Elif(read_phase != 0):
            m.d.comb += old_read_next.eq(read_bias_out + ((5 - read_phase) * L))
        with m.Else():
            m.d.comb += old_read_next.eq(read_bias_out + 4 * L)
        # row q is read at e+q and arrives one cycle later
        row_arriving = Signal(2)
        row_valid = Signal()
        m.d.sync += [row_valid.eq((e_valid & bias_update) | (bias_phase != 0)),
                     row_arriving.eq(Mux(e_valid & bias_update, 0, 4 - bias_phase))]
        b_go = Signal()
        m.d.sync += b_go.eq(row_valid & (row_arriving == 3))
        bias_updaters = []
        for j in range(per_row):
            bu = BiasUpdater(shared_product=True)
            m.submodules[f"bias_updater{j}"] = bu
            bias_updaters.append(bu)
            m.d.comb += [bu.valid.eq(row_valid), bu.bias.eq(old_data[32 * j: 32 * j + 32].as_signed())]
            with m.Switch(row_arriving):
                for q in range(4):
                    lane = q * per_row + j
                    with m.Case(q):
                        m.d.comb += [bu.grad.eq(job_acc[32 * lane: 32 * lane + 32].as_signed()),
                                     bu.multiplier.eq(job_mult[32 * lane: 32 * lane + 32]),
                                     bu.shift.eq(fraction_bits(job_shift[8 * lane: 8 * lane + 8]))]
        bias_new = Signal(32 * L)
        row_done = delayed(row_arriving, BiasUpdater.LATENCY, "bias_row_done")
        with m.If(bias_updaters[0].out_valid):
            with m.Switch(row_done):
                for q in range(4):
                    with m.Case(q):
                        m.d.sync += bias_new.word_select(q, 8 * L).eq(Cat(*[bu.new_bias for bu in bias_updaters]))
        # One product per lane for the four epilogue products (hw/shared_product.py): a
        # descriptor runs one epilogue, and an update or a scaled gradient leaves the
        # requantizer's result unused, so the requantizer's request is the default.
        # Without a pumped scratchpad the requester is chosen by the descriptor, from registers,
        # rather than by the requests' valids: the valids (e_valid and the updaters' pipelines)
        # made the longest path of the two-port SoC (27.41 ns, session 25), through the operand
        # select into the multiplier. Every request of a descriptor comes from its one epilogue,
        # and the next descriptor's fields are registered only after the drain, when the
        # products are used. The pumped boards keep the netlist whose placement routed.
        by_descriptor = not cfg.scratchpad_pumped
        if by_descriptor:
            use_weight, use_bias, use_scale = Signal(), Signal(), Signal()
            m.d.sync += [use_weight.eq(weight_update), use_bias.eq(bias_update),
                         use_scale.eq(gradient & scale & ~is_add)]
        for l in range(L):
            # lane l's product also serves weight updater l (l < L/S) and bias updater l (l < L/4)
            updaters = weight_updaters[l:l + 1] + bias_updaters[l:l + 1]
            scale_valid, scale_a, scale_b, unscaled = scale_requests[l]
            rq = requantizers[l]
            if by_descriptor:
                chosen = [use_weight] * len(weight_updaters[l:l + 1]) + [use_bias] * len(bias_updaters[l:l + 1])
                scale_valid = use_scale
            else:
                chosen = [u.product_valid for u in updaters]
            shared = m.submodules[f"shared_product{l}"] = SharedProduct(
                [(valid, u.product_a, u.product_b) for valid, u in zip(chosen, updaters)]
                + [(scale_valid, scale_a, scale_b), (rq.product_valid, rq.product_a, rq.product_b)])
            m.d.comb += [u.product.eq(shared.product) for u in updaters + [rq]]
            m.d.comb += g1_v[l].eq(Mux(g1_scaled, shared.product[:48], unscaled))
        bias_valid = delayed(b_go, BiasUpdater.LATENCY, "bias_valid")
        bias_w_active = delayed(e_active, BiasUpdater.LATENCY + 5, "bias_w_active")
        bias_w_out = delayed(e_out, BiasUpdater.LATENCY + 5, "bias_w_out")

        prng_write_back = Signal()     # the last drain cycle of a weight update
        exponent_write = Signal()      # GRADIENT: e = e_A + k goes to exp_out_addr between the passes
        # ---------------------------------------------------------------- writer
        w_phase = Signal(3)          # write cycles still to do after this one
        w_data = Signal(32 * L)      # raw accumulators or [y | mask]
        w_active = Signal.like(x_active)
        w_out = Signal(32)
        w_kind = Signal(2)           # 0 int8 (+mask), 1 raw32 vector, 2 raw32 dot
        write_addr = Signal(32); write_data = Signal(8 * L); write_enable = Signal(L)
        active_mask = (Const(1, L + 1) << w_active) - 1
        raw_vector = Cat(*[a for a in acc])
        start_raw = e_valid & raw32
        with m.If(start_raw):
            m.d.sync += [w_data.eq(raw_vector), w_active.eq(e_active), w_out.eq(e_out),
                         w_kind.eq(Mux(dot, 2, 1)), w_phase.eq(Mux(dot, 1, 4))]
        with m.Elif(rq_valid):
            m.d.sync += [w_data.eq(Cat(rq_y, rq_mask)), w_active.eq(rq_active), w_out.eq(rq_out),
                         w_kind.eq(0), w_phase.eq(Mux(write_mask, 2, 1))]
        with m.Elif(upd_valid):
            m.d.sync += [w_data.eq(upd_new), w_active.eq(upd_active), w_out.eq(upd_out),
                         w_kind.eq(0), w_phase.eq(1)]
        with m.Elif(bias_valid):
            m.d.sync += [w_data.eq(bias_new), w_active.eq(bias_w_active), w_out.eq(bias_w_out),
                         w_kind.eq(1), w_phase.eq(4)]
        with m.Elif(g2_valid):
            m.d.sync += [w_data.eq(g2_y), w_active.eq(g2_active), w_out.eq(g2_out),
                         w_kind.eq(0), w_phase.eq(1)]
        with m.Elif(w_phase != 0):
            m.d.sync += w_phase.eq(w_phase - 1)
        # What is written in the cycle after the data was captured (and the following ones).
        total_phases = Mux(w_kind == 0, Mux(write_mask, 2, 1), Mux(w_kind == 2, 1, 4))
        w_step = Signal(3)
        m.d.comb += w_step.eq(total_phases - w_phase)
        quarter = L // 4
        with m.If(w_phase != 0):
            with m.Switch(w_kind):
                with m.Case(0):
                    with m.If(w_step == 0):
                        m.d.comb += [write_addr.eq(w_out), write_data.eq(w_data[:8 * L]),
                                     write_enable.eq(active_mask)]
                    with m.Else():
                        bit_offset = w_out - fs("out_base")
                        mask_bytes = (w_active + 7) >> 3
                        m.d.comb += [write_addr.eq(fs("mask_base") + (bit_offset >> 3)),
                                     write_data.eq(w_data[8 * L: 9 * L] & active_mask),
                                     write_enable.eq((Const(1, L + 1) << mask_bytes) - 1)]
                with m.Case(1):
                    # lanes [quarter*step, quarter*(step+1)) as 4-byte words
                    m.d.comb += [write_addr.eq(w_out + (w_step * quarter * 4)),
                                 write_data.eq(w_data.word_select(w_step[:2], 8 * L))]
                    lanes_done = w_step * quarter
                    for j in range(L):
                        m.d.comb += write_enable[j].eq(lanes_done + j // 4 < w_active)
                with m.Case(2):
                    m.d.comb += [write_addr.eq(w_out), write_data.eq(w_data[:32]), write_enable.eq(0b1111)]

        # Host writes share the scratchpad's write port while the engine is idle. The scratchpad
        # registers the write (after its bank split), so it lands one cycle after it is asked
        # for: the pumped scratchpad writes at its middle edge, half a cycle after that
        # register, so no path into it starts in the writer's muxes. Nothing reads a word in
        # the cycle after it is written: a descriptor's outputs never overlap its inputs, the
        # state words are read long after, and the host port's users leave a cycle.
        port_addr = Signal.like(spad.write_addr, name="port_addr")
        port_data = Signal.like(spad.write_data, name="port_data")
        port_enable = Signal.like(spad.write_enable, name="port_enable")
        if cfg.scratchpad_two_port:
            write_queue_empty = Signal()
            self._write_queue(m, spad, (port_addr, port_data, port_enable),
                              port2_taken=b_read_en & ~b_read_external, empty=write_queue_empty)
        else:
            write_queue_empty = None
            m.d.comb += [spad.write_addr.eq(port_addr), spad.write_data.eq(port_data),
                         spad.write_enable.eq(port_enable)]
        with m.If(~self.busy & self.host_we):
            m.d.comb += [port_addr.eq(host_byte), port_data.eq(self.host_wdata),
                         port_enable.eq(Mux(self.host_space == 0, 0b1111, 0)),
                         ext.write_addr.eq(host_byte), ext.write_data.eq(self.host_wdata),
                         ext.write_enable.eq(Mux(self.host_space == 1, 0b1111, 0))]
        with m.Elif(prng_write_back):
            m.d.comb += [port_addr.eq(fs("prng_addr")), port_data.eq(sr_state), port_enable.eq(0b1111)]
        with m.Elif(exponent_write):
            m.d.comb += [port_addr.eq(fs("exp_out_addr")), port_data.eq(grad_e), port_enable.eq(0b1111)]
        with m.Else():
            m.d.comb += [port_addr.eq(write_addr), port_data.eq(write_data), port_enable.eq(write_enable)]

        # ---------------------------------------------------------------- monitor
        # What a run touched, for the benchmark's measured peak and external traffic. The host
        # port's old-value reads during updates are not counted: they read what the update writes.
        # (A reads of padding positions are not accesses: their address is outside the tensor)
        # Pipelined, so no address path ends in its compares: the ports' registered addresses
        # and the write port's (registered here, captured only while busy, so host writes never
        # count) become one-past-the-end candidates in one cycle, their maximum meets
        # `high_water` in the next. `high_water` trails the ports by at most three cycles;
        # `done` comes more than a drain later.
        a_counted = Signal()
        write_seen = Signal()
        write_seen_addr = Signal.like(spad.write_addr)
        m.d.sync += [a_counted.eq(step & a_in_bounds), write_seen.eq(self.busy & (spad.write_enable != 0)),
                     write_seen_addr.eq(spad.write_addr)]
        ends = [Signal(len(issue_b_addr) + 1, name=f"touched_end{i}") for i in range(3)]
        m.d.sync += [ends[0].eq(Mux(issue_a_en & a_counted, issue_a_addr + L, 0)),
                     ends[1].eq(Mux(spad_b.en, issue_b_addr + L, 0)),
                     ends[2].eq(Mux(write_seen, write_seen_addr + L, 0))]
        highest = ends[0]
        for end in ends[1:]:
            highest = Mux(end > highest, end, highest)
        with m.If(highest > high_water):
            m.d.sync += high_water.eq(highest)
        with m.If(self.busy & ext_b.en):
            m.d.sync += external_reads.eq(external_reads + 1)

        # ---------------------------------------------------------------- sequencer
        drain = Signal(range(64))
        # two-port: the drain also waits for the last writes to leave the write queue
        drain_done = (drain == 0) if write_queue_empty is None else (drain == 0) & write_queue_empty
        fetch_addr = Signal(32)
        m.d.comb += fetch_addr.eq(self.program_base + (index * (isa.DESCRIPTOR_WORDS * 4)))
        # fetched words arrive D cycles after their read
        fetch_word = fetch_pipe[-1]
        for i in range(D):
            m.d.sync += fetch_pipe[i].eq(fetch_pipe[i - 1] if i else 0)
        # a fetch read returns L bytes: words_per_read descriptor words at once. Reads start at
        # multiples of words_per_read, so word i always comes from slot i % words_per_read: a
        # load enable per word, not a dynamically indexed write (a 32-bit mux per word and slot).
        for i in range(isa.DESCRIPTOR_WORDS):
            slot = i % words_per_read
            with m.If(fetch_word == i - slot + 1):
                m.d.sync += desc[i].eq(b_data[32 * slot: 32 * slot + 32])
        # param loads arrive D cycles after their read
        param_pipe_valid = Signal()
        param_pipe_kind = Signal(2)
        param_pipe_channel = Signal.like(param_channel)
        pv = delayed(param_pipe_valid, D, "param_valid")
        pk = delayed(param_pipe_kind, D, "param_kind")
        pc = delayed(param_pipe_channel, D, "param_channel")
        # a parameter read returns L bytes: words_per_read int32 / uint32 entries (channels pc..),
        # or L shift bytes; the words are repeated across the row so lane l takes word l mod W
        param_count_d = delayed(param_count, D, "param_count")
        for i, (port, per_read) in enumerate(zip(param_w, (words_per_read, words_per_read, L))):
            row_data = Cat(*[b_data[:32 * words_per_read]] * (L // words_per_read)) if i < 2 else b_data
            lane_start = pc[:lane_bits]
            valid_lanes = Signal(L, name=f"param_lanes{i}")
            for j in range(per_read):
                m.d.comb += valid_lanes[j].eq(pc + j < param_count_d)
            m.d.comb += [port.addr.eq(pc >> lane_bits), port.data.eq(row_data),
                         port.en.eq(Mux(pv & (pk == i), valid_lanes << lane_start, 0))]

        m.d.comb += [trace_w.addr.eq(index), trace_w.data.eq(cycles)]
        m.d.sync += self.done.eq(0)

        # list loads arrive D cycles after their read: entry i goes to list_mem[i]
        list_issue = Signal(16)
        list_bad = Signal()                  # an entry was not below list_limit
        list_pipe_valid = Signal()
        list_arrive_valid = delayed(list_pipe_valid, D, "list_valid")
        list_arrive_index = delayed(list_issue, D, "list_index")
        entry = b_data[:16]
        m.d.comb += [list_w.addr.eq(list_arrive_index), list_w.en.eq(list_arrive_valid),
                     list_w.data.entry.eq(entry)]
        m.d.comb += [getattr(list_w.data, name).eq((entry * stride)[:32])
                     for name, stride in (("a", stride_a), ("b", stride_b), ("out", stride_out))]
        with m.If(list_arrive_valid & (entry >= list_limit)):
            m.d.sync += list_bad.eq(1)

        def after_list():
            with m.If(needs_params):
                m.next = "PARAMS"
            with m.Elif(gradient):
                m.next = "STATE"
            with m.Else():
                m.next = "RUN"
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [index.eq(0), cycles.eq(0), error_code.eq(0), self.error.eq(0),
                                 high_water.eq(0), external_reads.eq(0),
                                 self.busy.eq(1), fetch_issue.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(fetch_issue < isa.DESCRIPTOR_WORDS):
                    m.d.comb += [b_read_addr.eq(fetch_addr + (fetch_issue << 2)), b_read_en.eq(1),
                                 b_read_external.eq(1)]
                    m.d.sync += [fetch_pipe[0].eq(fetch_issue + 1), fetch_issue.eq(fetch_issue + words_per_read),
                                 term.eq(0)]
                with m.Elif(Cat(*fetch_pipe) == 0):
                    m.d.sync += [term.eq(1)] + [x.eq(0) for x in lo + hi]
                    m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += term.eq(2)
                with m.If(opcode == isa.END):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                    m.next = "IDLE"
                with m.Elif((opcode != isa.MAC) & (opcode != isa.ADD)):
                    m.d.sync += error_code.eq(isa.ERR_OPCODE)
                    m.next = "ERROR"
                with m.Elif(shape_bad_seen):
                    m.d.sync += error_code.eq(isa.ERR_SHAPE)
                    m.next = "ERROR"
                with m.Else():
                    m.d.sync += [lo[0].eq(fs("a_base")), hi[0].eq(fs("a_base")),
                                 lo[1].eq(fs("b_base")), hi[1].eq(fs("b_base")),
                                 lo[2].eq(fs("out_base")), hi[2].eq(fs("out_base"))]
                    m.next = "RANGE"
            with m.State("RANGE"):
                with m.If(term < len(terms)):
                    m.d.sync += term.eq(term + 1)
                with m.If(span_valid):
                    for which in range(3):
                        with m.If(span_operand == which):
                            with m.If(span < 0):
                                m.d.sync += lo[which].eq(lo[which] + span)
                            with m.Else():
                                m.d.sync += hi[which].eq(hi[which] + span)
                with m.Elif(range_code != 0):
                    m.d.sync += error_code.eq(range_code)
                    m.next = "ERROR"
                with m.Else():
                    m.d.sync += [eff_a[k].eq(fs("a_strides", k) + row_steps[k] + col_steps[k]) for k in range(6)]
                    m.d.sync += a_origin.eq(fs("a_base") + origin_row + origin_col)
                    m.d.sync += [x.eq(0) for x in idx + pa + pb + po + prow + pcol]
                    # with a list, RUN opens with a bubble so the first entry is read
                    m.d.sync += [param_kind.eq(0), param_channel.eq(0), bubble.eq(list_on),
                                 state_count.eq(0), amax.eq(0), grad_pass1.eq(gradient),
                                 list_issue.eq(0), list_bad.eq(0)]
                    with m.If(list_on):
                        m.next = "LIST"
                    with m.Else():
                        after_list()
            with m.State("LIST"):
                # one entry read per cycle on port B; each arrives D cycles later
                with m.If(list_issue < list_count):
                    m.d.comb += [b_read_addr.eq(fs("list_addr") + (list_issue << 1)), b_read_en.eq(1),
                                 list_pipe_valid.eq(1)]
                    m.d.sync += list_issue.eq(list_issue + 1)
                with m.Else():
                    m.d.sync += drain.eq(D + 1)
                    m.next = "LIST_WAIT"
            with m.State("LIST_WAIT"):
                with m.If(drain == 0):
                    with m.If(list_bad):
                        m.d.sync += error_code.eq(isa.ERR_LIST_ENTRY)
                        m.next = "ERROR"
                    with m.Else():
                        after_list()
                with m.Else():
                    m.d.sync += drain.eq(drain - 1)
            with m.State("PARAMS"):
                with m.If(param_kind < 3):
                    base = fs("param_base")
                    offset = Mux(param_kind == 0, param_channel << 2,
                                 Mux(param_kind == 1, (param_count << 2) + (param_channel << 2),
                                     (param_count << 3) + param_channel))
                    m.d.comb += [b_read_addr.eq(base + offset), b_read_en.eq(1),
                                 b_read_external.eq(params_external),
                                 param_pipe_valid.eq(1), param_pipe_kind.eq(param_kind),
                                 param_pipe_channel.eq(param_channel)]
                    per_read = Mux(param_kind == 2, L, words_per_read)
                    with m.If(param_channel + per_read >= param_count):
                        m.d.sync += [param_channel.eq(0), param_kind.eq(param_kind + 1)]
                    with m.Else():
                        m.d.sync += param_channel.eq(param_channel + per_read)
                with m.Else():
                    m.d.sync += drain.eq(D + 1)
                    m.next = "PARAMS_WAIT"
            with m.State("PARAMS_WAIT"):
                with m.If(drain == 0):
                    m.d.sync += state_count.eq(0)
                    with m.If(updates | gradient):
                        m.next = "STATE"
                    with m.Else():
                        m.next = "RUN"
                with m.Else():
                    m.d.sync += drain.eq(drain - 1)
            with m.State("STATE"):
                # read e_y (cycle 0) and the PRNG state (cycle 1); both arrive D cycles later
                with m.If(state_count == 0):
                    m.d.comb += [b_read_addr.eq(fs("exp_addr")), b_read_en.eq(1)]
                with m.If(state_count == D):
                    m.d.sync += exponent.eq(b_data[:32])
                with m.If(state_count == 1):
                    m.d.comb += [b_read_addr.eq(Mux(gradient, fs("exp2_addr"), fs("prng_addr"))), b_read_en.eq(1)]
                with m.If(state_count == D + 1):
                    m.d.sync += [sr_state.eq(Mux(b_data[:32] == 0, ZERO_SEED, b_data[:32])),
                                 exponent2.eq(b_data[:32])]
                    m.next = "RUN"
                m.d.sync += state_count.eq(state_count + 1)
            with m.State("RUN"):
                with m.If(bubble != 0):
                    m.d.sync += bubble.eq(bubble - 1)
                with m.Else():
                    m.d.comb += [step.eq(1), b_read_addr.eq(b_addr), b_read_en.eq(~b_ones),
                                 b_read_external.eq(b_external)]
                    m.d.sync += vector_steps.eq(steps_so_far)
                    with m.If(last_reduction):
                        # writes catch up (a weight update: the shared updaters free up); a new
                        # list index waits one cycle for its entry
                        pause = Mux(weight_update, S - steps_so_far, write_cycles - 1)
                        if cfg.scratchpad_two_port:
                            # a cycle for the old-value reads (port 1) or the write queue
                            # (port 2, when B reads the scratchpad), golden/engine/cycles.py
                            extra = (updates | (gradient & mask_in)
                                     | (~b_ones & ~b_external & ~(gradient & grad_pass1)))
                            pause = Mux(weight_update, Mux(S - steps_so_far > 0, S - steps_so_far, 1),
                                        write_cycles - 1 + extra)
                        m.d.sync += bubble.eq(pause + (list_on & list_inner_last))
                    with m.If(all_last & grad_pass1):
                        m.d.sync += drain.eq(D + GRADIENT_WAIT)
                        m.next = "GRADIENT_WAIT"
                    with m.Elif(all_last):
                        m.d.sync += drain.eq(D + 2 + Requantizer.LATENCY + DRAIN_EXTRA)
                        m.next = "DRAIN"
            with m.State("GRADIENT_WAIT"):
                # pass 1's last |v| reaches amax; then k and e, then e is written
                with m.If(drain == 0):
                    m.d.sync += grad_k.eq(Mux(amax_bits > 7, amax_bits - 7, 0))
                    m.next = "GRADIENT_EXPONENT"
                with m.Else():
                    m.d.sync += drain.eq(drain - 1)
            with m.State("GRADIENT_EXPONENT"):
                m.d.comb += exponent_write.eq(1)
                m.d.sync += grad_pass1.eq(0)
                if cfg.scratchpad_two_port:
                    # pass 2 opens as RUN does (pass 1's last pause is the two-port's extra
                    # cycle, which pass 2 does not wait for; without it, that pause is exactly
                    # this opening bubble)
                    m.d.sync += bubble.eq(list_on)
                m.next = "RUN"
            with m.State("DRAIN"):
                with m.If(drain_done):
                    m.d.comb += prng_write_back.eq(weight_update)
                    m.d.comb += trace_w.en.eq(1)
                    m.d.sync += [index.eq(index + 1), fetch_issue.eq(0)]
                    m.next = "FETCH"
                with m.Else():
                    m.d.sync += drain.eq(drain - 1)
            with m.State("ERROR"):
                m.d.sync += [self.error.eq(1), self.busy.eq(0), self.done.eq(1)]
                m.next = "IDLE"
        return m
