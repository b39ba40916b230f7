"""The golden executor: runs an engine program on byte arrays exactly as the RTL must.

`Machine` holds the scratchpad and the external memory as uint8 arrays. `run(program)` checks
each descriptor (program.check) and executes it; on a failed check it stops with the error code
and the descriptor's index, having written nothing of that descriptor, as the engine does.
The semantics of each opcode are docs/engine.md's; the numerics inside are docs/numerics.md's,
computed here with the golden fixed-point functions so there is one definition of each.

Accumulators are 32-bit two's complement (they wrap; the compiler proves they never need to).
The executor is vectorised over loop indices with NumPy, so a MobileNetV2 layer takes a second,
not an hour.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fixedpoint import GRAD_MAX, MultiplierVector, bitlen, round_shift
from ..prng import Xorshift32
from ..train import apply_bias_update, apply_weight_update, ROUNDINGS
from . import program as isa
from .config import EngineConfig

BLOCK_ELEMENTS = 1 << 22      # bound on (outputs x reductions x lanes) evaluated at once


class EngineError(Exception):
    def __init__(self, code: int, index: int, descriptor: isa.Descriptor | None):
        self.code, self.index, self.descriptor = code, index, descriptor
        what = descriptor.describe() if descriptor is not None else "?"
        super().__init__(f"engine error {code} ({isa.ERROR_NAMES.get(code, '?')}) "
                         f"at descriptor {index} ({what})")


@dataclass
class RunResult:
    descriptors: int
    error_code: int = isa.OK
    error_index: int = 0


def _wrap32(a: np.ndarray) -> np.ndarray:
    return ((a + 2 ** 31) & 0xFFFFFFFF) - 2 ** 31


def _loop_indices(counts) -> np.ndarray:
    """(prod(counts), len(counts)) array of index tuples in row-major (loop 0 outermost) order."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.int64) for n in counts], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1) if counts else np.zeros((1, 0), np.int64)


class Machine:
    """Scratchpad + external memory + the engine's architectural state."""

    def __init__(self, config: EngineConfig, external: np.ndarray | None = None):
        self.config = config
        self.scratchpad = np.zeros(config.scratchpad_bytes, dtype=np.uint8)
        self.external = np.zeros(config.external_bytes, dtype=np.uint8)
        if external is not None:
            self.load_external(0, external)

    # -- host access ---------------------------------------------------------------------
    def load_external(self, address: int, data: np.ndarray) -> None:
        data = np.asarray(data, dtype=np.uint8).ravel()
        if address < 0 or address + data.size > self.external.size:
            raise ValueError(f"external image of {data.size} bytes at {address} does not fit "
                             f"{self.external.size} bytes")
        self.external[address:address + data.size] = data

    def write(self, address: int, data: np.ndarray) -> None:
        data = np.asarray(data).view(np.uint8).ravel() if np.asarray(data).dtype != np.uint8 \
            else np.asarray(data).ravel()
        if address < 0 or address + data.size > self.scratchpad.size:
            raise ValueError(f"{data.size} bytes at {address} do not fit the scratchpad")
        self.scratchpad[address:address + data.size] = data

    def read(self, address: int, count: int, dtype=np.uint8) -> np.ndarray:
        nbytes = count * np.dtype(dtype).itemsize
        return self.scratchpad[address:address + nbytes].copy().view(dtype)

    # -- execution -----------------------------------------------------------------------
    def run(self, descriptors: list[isa.Descriptor]) -> RunResult:
        """Run until END; returns the result (error_code 0 if all went well)."""
        for index, d in enumerate(descriptors):
            if d.opcode == isa.END:
                return RunResult(index)
            code = isa.check(d, self.config)
            if code == isa.OK and isa.list_loop(d) is not None:
                entries = self._list(d)
                if entries.size and entries.max() >= d.list_limit:
                    code = isa.ERR_LIST_ENTRY
            if code != isa.OK:
                return RunResult(index, code, index)
            if d.opcode == isa.MAC:
                self._mac(d)
            else:
                self._add(d)
        return RunResult(len(descriptors), isa.ERR_PROGRAM_RANGE, len(descriptors))

    def run_or_raise(self, descriptors: list[isa.Descriptor]) -> RunResult:
        result = self.run(descriptors)
        if result.error_code:
            bad = descriptors[result.error_index] if result.error_index < len(descriptors) else None
            raise EngineError(result.error_code, result.error_index, bad)
        return result

    def _list(self, d: isa.Descriptor) -> np.ndarray:
        count = d.counts[isa.list_loop(d)]
        return self.scratchpad[d.list_addr:d.list_addr + 2 * count].view("<u2").astype(np.int64)

    def _through_list(self, d: isa.Descriptor, idx: np.ndarray, operand: int) -> np.ndarray:
        """Loop indices as the address generator of `operand` (FLAG_LIST_A/B/OUT) sees them: the
        list loop's index i becomes list[i] if the operand's bit is set (docs/engine.md,
        "Channel lists")."""
        looped = isa.list_loop(d)
        if looped is None or not d.flags & operand:
            return idx
        idx = idx.copy()
        idx[..., looped] = self._list(d)[idx[..., looped]]
        return idx

    def _channels(self, d: isa.Descriptor, o: np.ndarray) -> np.ndarray:
        """(outputs, L) parameter channel of each lane: chunk * L + lane, or in list-chunk mode
        the list entry (+ lane)."""
        L = self.config.lanes
        lane = np.arange(L, dtype=np.int64)
        if isa.list_chunk(d):
            return self._list(d)[o[:, d.chunk_loop]][:, None] + lane
        return L * o[:, d.chunk_loop][:, None] + lane

    def _active(self, d: isa.Descriptor, chunk: np.ndarray) -> np.ndarray:
        L = self.config.lanes
        if isa.list_chunk(d):
            return np.full(chunk.shape, d.lanes_total)
        return np.minimum(L, d.lanes_total - L * chunk)

    def _params(self, d: isa.Descriptor):
        mem = self.external if d.flags & isa.FLAG_PARAMS_EXTERNAL else self.scratchpad
        C, base = isa.param_count(d), d.param_base
        bias = mem[base:base + 4 * C].view(np.int32).astype(np.int64)
        mult = mem[base + 4 * C:base + 8 * C].view(np.uint32).astype(np.int64)
        # The engine uses the low 6 bits of the shift byte (numerics: n in 1..62).
        shift = mem[base + 8 * C:base + 9 * C].astype(np.int64) & 63
        return bias, mult, shift

    def _mac(self, d: isa.Descriptor) -> None:
        L = self.config.lanes
        counts = list(d.counts)
        outs = _loop_indices(counts[:isa.OUTPUT_LOOPS])
        reds = _loop_indices(counts[isa.OUTPUT_LOOPS:])
        lane = np.arange(L, dtype=np.int64)
        a_vector = d.mode != isa.BROADCAST
        b_mem = self.external if d.flags & isa.FLAG_B_EXTERNAL else self.scratchpad
        spad = self.scratchpad.view(np.int8)
        b_signed = b_mem.view(np.int8)
        if isa.needs_params(d):
            bias, mult, shift = self._params(d)
        block = max(1, BLOCK_ELEMENTS // max(1, len(reds) * L))
        results = []
        for start in range(0, len(outs), block):
            o = outs[start:start + block]                              # (O, 3)
            idx = np.concatenate([np.repeat(o[:, None, :], len(reds), axis=1),
                                  np.repeat(reds[None, :, :], len(o), axis=0)], axis=2)  # (O, R, 6)
            active = self._active(d, idx[..., d.chunk_loop])           # (O, R)
            lane_on = lane[None, None, :] < active[..., None]          # (O, R, L)
            row = d.a_row0 + idx @ np.array(d.a_row_coefs, dtype=np.int64)
            col = d.a_col0 + idx @ np.array(d.a_col_coefs, dtype=np.int64)
            valid = (row >= 0) & (row < d.a_rows) & (col >= 0) & (col < d.a_cols)
            at = self._through_list(d, idx, isa.FLAG_LIST_A)
            a_addr = (d.a_base + row * d.a_row_stride + col * d.a_col_stride
                      + at @ np.array(d.a_strides, dtype=np.int64))
            if d.mode == isa.SUMS:
                # lane l's accumulator is the int32 at byte 4 (l mod L/4) of the row read at
                # reduction step l div L/4 (the 4 steps read the 4 rows of L sums)
                per_row = L // 4
                step, word = lane // per_row, lane % per_row
                loaded = valid[:, step] & lane_on[:, 0]                     # (O, L)
                word_at = np.where(loaded, a_addr[:, step] + 4 * word, 0)
                raw = self.scratchpad[word_at[..., None] + np.arange(4)].astype(np.int64)
                value = raw[..., 0] | raw[..., 1] << 8 | raw[..., 2] << 16 | raw[..., 3] << 24
                value = np.where(value >= 2 ** 31, value - 2 ** 32, value)
                results.append((o, np.where(loaded, value, 0)))
                continue
            if a_vector:
                addr = np.where(valid[..., None] & lane_on, a_addr[..., None] + lane, 0)
                a = spad[addr].astype(np.int64) - d.a_zero
                a = np.where(valid[..., None] & lane_on, a, 0)
            else:
                a = np.where(valid, spad[np.where(valid, a_addr, 0)].astype(np.int64) - d.a_zero, 0)
                a = np.where(lane_on, a[..., None], 0)
            if d.flags & isa.FLAG_B_ONES:
                b = np.ones(lane_on.shape, dtype=np.int64)
            else:
                b_addr = d.b_base + self._through_list(d, idx, isa.FLAG_LIST_B) @ np.array(d.b_strides, dtype=np.int64)
                addr = np.where(lane_on, b_addr[..., None] + lane, 0)
                b = b_signed[addr].astype(np.int64)
            products = np.where(lane_on, a * b, 0)
            if d.mode == isa.DOT:
                acc = _wrap32(products.sum(axis=(1, 2)))[:, None]    # (O, 1)
            else:
                acc = _wrap32(products.sum(axis=1))                  # (O, L)
            results.append((o, acc))
        if d.epilogue in isa.UPDATES:
            self._update(d, results, mult, shift)
            return
        if d.epilogue == isa.GRADIENT:
            e_A = int(self.read(d.exp_addr, 1, np.int32)[0]) + d.exp_offset
            if d.flags & isa.FLAG_SCALE:
                factor = mult & 0xFFFF          # the engine multiplies by the low 16 bits
                scaled = []
                for o, acc in results:
                    c = np.minimum(L * o[:, d.chunk_loop][:, None] + lane, d.lanes_total - 1)
                    scaled.append((o, acc * factor[c]))
                results = scaled
            self._quantize_and_write(d, results, e_A)
            return
        self._write_mac_outputs(d, results, bias if d.epilogue == isa.REQUANT else None,
                                mult if d.epilogue == isa.REQUANT else None,
                                shift if d.epilogue == isa.REQUANT else None)

    def _write_mac_outputs(self, d, results, bias, mult, shift) -> None:
        L = self.config.lanes
        lane = np.arange(L, dtype=np.int64)
        strides = np.array(d.out_strides, dtype=np.int64)
        for o, acc in results:
            out_addr = d.out_base + self._through_list(d, o, isa.FLAG_LIST_OUT) @ strides
            if d.mode == isa.DOT:
                values = acc[:, 0].astype("<i4").view(np.uint8).reshape(-1, 4)
                addr = out_addr[:, None] + np.arange(4)
                self.scratchpad[addr] = values
                continue
            chunk = o[:, d.chunk_loop]
            active = np.minimum(L, d.lanes_total - L * chunk)
            lane_on = lane[None, :] < active[:, None]
            if d.epilogue == isa.RAW32:
                values = acc.astype("<i4").view(np.uint8).reshape(len(o), L, 4)
                addr = out_addr[:, None, None] + 4 * lane[None, :, None] + np.arange(4)
                self.scratchpad[addr[lane_on]] = values[lane_on]
                continue
            c = np.minimum(L * chunk[:, None] + lane, d.lanes_total - 1)
            total = np.clip(bias[c] + acc, -2 ** 31, 2 ** 31 - 1)
            if mult.max(initial=0) > 2 ** 31:
                # outside the contract (M <= 2^31) the product can pass int64: exact integers
                product = total.astype(object) * mult[c].astype(object)
                pre = np.array([[(int(v) + (1 << (int(k) - 1) if k else 0)) >> int(k) for v, k in zip(pv, pk)]
                                for pv, pk in zip(product, shift[c])], dtype=np.int64) + d.zero_out
            else:
                pre = d.zero_out + round_shift(total * mult[c], shift[c])
            y = np.clip(pre, -128, 127).astype(np.int8).view(np.uint8)
            addr = out_addr[:, None] + lane
            self.scratchpad[addr[lane_on]] = y[lane_on]
            if d.flags & isa.FLAG_WRITE_MASK:
                self._write_mask(d, out_addr - d.out_base, (pre >= -128) & (pre <= 127), lane_on)

    def _quantize_and_write(self, d, results, e_A: int) -> None:
        """GRADIENT: numerics 5's quantizer over every active output, then the int8 writes.

        Pass 1 finds max|v| over the whole descriptor, k = max(0, bitlen - 7), and the exponent
        e_A + k goes to exp_out_addr (int32); pass 2 writes clamp(round_shift(v, k), -127, 127),
        times the output's mask bit with FLAG_MASK_IN.
        """
        L = self.config.lanes
        lane = np.arange(L, dtype=np.int64)
        strides = np.array(d.out_strides, dtype=np.int64)
        dot = d.opcode == isa.MAC and d.mode == isa.DOT
        masks = []
        amax = 0
        for o, v in results:
            if dot:
                lane_on = np.ones((len(o), 1), bool)
            else:
                lane_on = lane[None, :] < np.minimum(L, d.lanes_total - L * o[:, d.chunk_loop])[:, None]
            masks.append(lane_on)
            if lane_on.any():
                amax = max(amax, int(np.abs(v[lane_on]).max()))
        k = max(0, bitlen(amax) - 7)
        self.write(d.exp_out_addr, np.array([e_A + k], dtype="<i4"))     # between the passes, as the engine
        for (o, v), lane_on in zip(results, masks):
            g = np.clip(round_shift(v, k), -GRAD_MAX, GRAD_MAX)
            out_addr = d.out_base + self._through_list(d, o, isa.FLAG_LIST_OUT) @ strides
            addr = out_addr[:, None] if dot else out_addr[:, None] + lane[None, :]
            if d.flags & isa.FLAG_MASK_IN:
                bit = addr - d.out_base
                g = g * ((self.scratchpad[d.mask_base + bit // 8] >> (bit % 8)) & 1)
            self.scratchpad[addr[lane_on]] = g.astype(np.int8).view(np.uint8)[lane_on]

    def _update(self, d, results, mult, shift) -> None:
        """UPDATE / BIAS_UPDATE: new = old - update(acc) for each active lane, in loop order.

        The fraction bits r = n[c] - e_y saturate to [-128, 127] (an 8-bit register); the draws
        of the `sr` stream go to active lanes in lane order, output vector by output vector.
        """
        L = self.config.lanes
        lane = np.arange(L, dtype=np.int64)
        strides = np.array(d.out_strides, dtype=np.int64)
        e_y = int(self.read(d.exp_addr, 1, np.int32)[0])
        o = np.concatenate([r[0] for r in results])
        acc = np.concatenate([r[1] for r in results])
        lane_on = lane[None, :] < self._active(d, o[:, d.chunk_loop])[:, None]
        c = self._channels(d, o)[lane_on]
        grads = acc[lane_on]
        r = np.clip(shift[c] - e_y, -128, 127)
        out_addr = (d.out_base + self._through_list(d, o, isa.FLAG_LIST_OUT) @ strides)[:, None]
        if d.epilogue == isa.UPDATE:
            addr = (out_addr + lane)[lane_on]
            old = self.scratchpad[addr].view(np.int8)
            rounding = ROUNDINGS[(d.flags >> isa.ROUNDING_SHIFT) & 3]
            rng = Xorshift32(int(self.read(d.prng_addr, 1, np.uint32)[0]))
            new = apply_weight_update(old[:, None], grads[:, None], 0, MultiplierVector(mult[c], r),
                                      rounding, rng)[:, 0]
            self.scratchpad[addr] = new.view(np.uint8)
            self.write(d.prng_addr, np.array([rng.state], dtype="<u4"))
        else:
            addr = (out_addr + 4 * lane)[lane_on]
            words = addr[:, None] + np.arange(4)
            old = self.scratchpad[words].copy().view("<i4")[:, 0]
            new = apply_bias_update(old, grads, 0, MultiplierVector(mult[c], r))
            self.scratchpad[words] = new.astype("<i4").view(np.uint8).reshape(-1, 4)

    def _write_mask(self, d, offsets, bits, lane_on) -> None:
        """Mask bits of each output vector: whole bytes from bit offset/8 (unused bits 0)."""
        L = self.config.lanes
        bits = (bits & lane_on).astype(np.uint8).reshape(len(offsets), L // 8, 8)
        packed = np.packbits(bits, axis=2, bitorder="little")[..., 0]          # (O, L/8)
        nbytes = (lane_on.sum(axis=1) + 7) // 8
        addr = d.mask_base + offsets[:, None] // 8 + np.arange(L // 8)
        keep = np.arange(L // 8)[None, :] < nbytes[:, None]
        self.scratchpad[addr[keep]] = packed[keep]

    def _sum_shifts(self, d: isa.Descriptor):
        """Numerics 5's alignment of two gradients as shifts: v = (x1 >>r r1 << l1) + (x2 >>r r2 << l2)."""
        e1 = int(self.read(d.exp_addr, 1, np.int32)[0])
        e2 = int(self.read(d.exp2_addr, 1, np.int32)[0])
        swap = e1 > e2
        low_e, high_e = (e2, e1) if swap else (e1, e2)
        diff = high_e - low_e
        round_low = max(0, diff - 23)
        left = min(diff, 23)
        e_A = high_e - left
        # (right shift, left shift) of x1 and x2: the lower-exponent one may be rounded, the other shifted up
        return ((0, left), (round_low, 0)) if swap else ((round_low, 0), (0, left)), e_A

    def _gradient_sum(self, d, x1, x2):
        ((r1, l1), (r2, l2)), _ = self._sum_shifts(d)
        return (round_shift(x1, r1) << l1) + (round_shift(x2, r2) << l2)

    def _sum_exponent(self, d) -> int:
        return self._sum_shifts(d)[1]

    def _add(self, d: isa.Descriptor) -> None:
        L = self.config.lanes
        outs = _loop_indices(list(d.counts[:isa.OUTPUT_LOOPS]))
        lane = np.arange(L, dtype=np.int64)
        idx = np.concatenate([outs, np.zeros((len(outs), 3), np.int64)], axis=1)
        active = np.minimum(L, d.lanes_total - L * idx[:, d.chunk_loop])
        lane_on = lane[None, :] < active[:, None]
        spad = self.scratchpad.view(np.int8)
        a_addr = d.a_base + idx @ np.array(d.a_strides, dtype=np.int64)
        b_addr = d.b_base + idx @ np.array(d.b_strides, dtype=np.int64)
        x1 = spad[np.where(lane_on, a_addr[:, None] + lane, 0)].astype(np.int64) - d.a_zero
        x2 = spad[np.where(lane_on, b_addr[:, None] + lane, 0)].astype(np.int64) - d.b_zero
        if d.epilogue == isa.GRADIENT:
            self._quantize_and_write(d, [(outs, self._gradient_sum(d, x1, x2))], self._sum_exponent(d))
            return
        pre = d.zero_out + round_shift(x1 * d.add_m1 + x2 * d.add_m2, d.add_shift)
        y = np.clip(pre, -128, 127).astype(np.int8).view(np.uint8)
        out_addr = d.out_base + outs @ np.array(d.out_strides, dtype=np.int64)
        addr = out_addr[:, None] + lane
        self.scratchpad[addr[lane_on]] = y[lane_on]
        if d.flags & isa.FLAG_WRITE_MASK:
            self._write_mask(d, out_addr - d.out_base, (pre >= -128) & (pre <= 127), lane_on)
