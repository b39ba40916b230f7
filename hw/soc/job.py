"""The training job: what the firmware needs to know about a compiled training program, as a
block of words in external memory (flash), and the flash image that holds it.

The firmware is built once against the SoC header (hw/soc/header.py) and reads everything that
depends on the model from the job block at `SocConfig.job_offset`: the programs' addresses, the
scratchpad addresses of the input, logits, clamp mask, gradient, exponent and PRNG state, the
softmax table, the samples and labels, the scratchpad preload (resident weights and
parameters), and the channel selection (the `select` stream's seed and the table above). So a test can change the iteration count, the samples or the program (a corrupted
one, say) without rebuilding firmware or simulator.

Flash image: the training program image (`TrainingProgram.external`) from 0; the job block at
`job_offset`, then the preload table (scratchpad address, flash offset, bytes per entry), the
channel selection table (per weight-updated conv in the order of the draws: list address or
NO_LIST, k, c, flags; `selection_table`), the preload data, the softmax table (256 words), the samples (already in the scratchpad's activation
layout, golden/engine/layout.py), one per `sample_stride` bytes, and the labels (one word each).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden.engine import layout
from golden.engine.training import TrainingProgram

from .config import SocConfig

JOB_MAGIC = 0x4A425053                # "SPBJ" little-endian
FLAG_PAUSE = 1                        # pause (sysctl) after every iteration for a testbench
# Word order of the job block; the header declares `struct job` in this order.
JOB_FIELDS = ("magic", "iterations", "flags", "forward_base", "backward_base",
              "forward_descriptors", "backward_descriptors", "input_addr", "input_bytes",
              "logits_addr", "mask_addr", "classes", "gradient_addr", "exponent_addr",
              "prng_addr", "sr_seed", "logit_scale_q24", "table_offset", "samples_offset",
              "sample_stride", "labels_offset", "preload_count", "preload_offset",
              "select_seed", "select_count", "select_offset")
MAX_CLASSES = 64                      # the firmware's buffers
MAX_SELECT_CONVS = 16                 # weight-updated convs with a channel selection
MAX_SELECT_CHANNELS = 512             # selectable channels of one conv (the shuffle's buffer)
MAX_LIST_ENTRIES = 1024               # selected channels of all convs together
NO_LIST = 0xFFFFFFFF                  # a selection entry whose conv has no list in the scratchpad
SELECT_RATIO_ONE = 1                  # flags: the conv selects all channels, no draws
SELECT_ENTRY_WORDS = 4                # list_addr, selected (k), channels (c), flags


def selection_table(model, scheme, program: TrainingProgram) -> list[tuple[int, int, int, int]]:
    """Per weight-updated conv, in the order golden/scheme.py's ChannelSelector draws them:
    (scratchpad address of its uint16 channel list or NO_LIST, k, c, flags). From the same
    objects the Trainer uses: nothing restated."""
    from golden.scheme import ChannelSelector
    selector = ChannelSelector(model, scheme, "dynamic", seed=1)
    lists = program.lists or {}
    table = []
    for index, k in selector.counts.items():
        c = int(selector.channels[index])
        one = selector.ratios[index] == 1.0
        if one and k != c:
            raise JobError(f"conv {index} has ratio 1 but selects {k} of {c} channels")
        at = lists.get(index, NO_LIST)
        if at != NO_LIST and at % 2:
            raise JobError(f"conv {index}'s channel list sits at odd scratchpad byte {at}")
        table.append((int(at), int(k), c, SELECT_RATIO_ONE if one else 0))
    if len(table) > MAX_SELECT_CONVS or any(c > MAX_SELECT_CHANNELS for _, _, c, _ in table) \
            or sum(k for _, k, _, _ in table) > MAX_LIST_ENTRIES:
        raise JobError(f"the channel selection ({len(table)} convs) exceeds the firmware's buffers "
                       f"({MAX_SELECT_CONVS} convs, {MAX_SELECT_CHANNELS} channels each, "
                       f"{MAX_LIST_ENTRIES} entries in all)")
    return table


class JobError(ValueError):
    """The program or the data do not fit what the firmware and the flash can hold."""


@dataclass
class FlashImage:
    data: np.ndarray                  # uint8, the bytes to load from external address 0
    job: dict                         # field -> value, as written
    program_bytes: int                # the training program image's size (the engine's part)


def _words(values) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).astype("<u4").view(np.uint8)


def flash_image(config: SocConfig, program: TrainingProgram, output: str, logit_scale: float,
                images: list[np.ndarray], labels, sr_seed: int, pause: bool = False,
                selection=(), select_seed: int = 0) -> FlashImage:
    """`output` is the model's logits tensor name; `images` are int8 (C, H, W) samples;
    `selection` is `selection_table(...)` and `select_seed` the state of the CPU's `select`
    stream before the first draw (the golden Trainer's `selector.rng.state`)."""
    selection = [tuple(int(v) for v in entry) for entry in selection]
    fwd = program.forward
    logits_addr, shape = fwd.tensors[output]
    classes = shape[0]
    input_addr, input_shape = fwd.tensors["input"]
    input_bytes = int(np.prod(input_shape))
    for name, value in (("input", input_addr), ("exponent", program.exponent_addr),
                        ("PRNG state", program.prng_addr)):
        if value % 4:
            raise JobError(f"the {name} sits at scratchpad byte {value}; the firmware needs it word-aligned")
    if not 1 <= classes <= MAX_CLASSES:
        raise JobError(f"{classes} classes; the firmware handles 1..{MAX_CLASSES}")
    if not 0 < logit_scale < 256:
        raise JobError(f"logit scale {logit_scale} is outside the firmware's fixed-point range (0, 256)")
    if len(images) != len(labels) or not images:
        raise JobError("one label per sample, and at least one sample")
    # The firmware writes the gradient as whole words: the bytes up to the next word boundary
    # must belong to nothing else.
    pad_begin, pad_end = program.gradient_addr + classes, -(-(program.gradient_addr + classes) // 4) * 4
    starts = [program.exponent_addr, program.prng_addr]
    starts += [address for address, _ in fwd.tensors.values()] + list(fwd.masks.values())
    starts += [address for pair in fwd.resident.values() for address in pair if address is not None]
    starts += list((program.lists or {}).values())
    if program.gradient_addr % 4 or any(pad_begin <= a < pad_end for a in starts):
        raise JobError(f"the gradient at scratchpad byte {program.gradient_addr} is not word-aligned with "
                       f"free padding up to byte {pad_end}; the firmware writes it in whole words")
    if program.external.size > config.job_offset:
        raise JobError(f"the training program image ({program.external.size} bytes) runs into the job block "
                       f"at {config.job_offset}")

    preload = [(address, np.asarray(data, np.uint8)) for address, data in fwd.preload]
    for address, data in preload:
        if address % 4:
            raise JobError(f"preload at scratchpad byte {address} is not word-aligned")
    sample_stride = -(-input_bytes // 4) * 4
    job_words = len(JOB_FIELDS)
    offset = config.job_offset + 4 * job_words
    preload_offset = offset
    offset += 12 * len(preload)
    select_offset = offset
    offset += 4 * SELECT_ENTRY_WORDS * len(selection)
    placed = []
    for address, data in preload:
        placed.append((address, offset, data))
        offset += -(-data.size // 4) * 4
    table_offset = offset
    offset += 4 * 256
    samples_offset = offset
    offset += sample_stride * len(images)
    labels_offset = offset
    offset += 4 * len(labels)
    if offset > config.engine.external_bytes:
        raise JobError(f"{len(images)} samples do not fit the {config.engine.external_bytes}-byte external memory")

    job = {"magic": JOB_MAGIC, "iterations": len(images), "flags": FLAG_PAUSE if pause else 0,
           "forward_base": 0, "backward_base": program.backward_base,
           "forward_descriptors": len(fwd.descriptors), "backward_descriptors": len(program.backward),
           "input_addr": input_addr, "input_bytes": input_bytes, "logits_addr": logits_addr,
           "mask_addr": fwd.masks[output], "classes": classes, "gradient_addr": program.gradient_addr,
           "exponent_addr": program.exponent_addr, "prng_addr": program.prng_addr,
           "sr_seed": sr_seed & 0xFFFFFFFF, "logit_scale_q24": int(round(logit_scale * 2 ** 24)),
           "table_offset": table_offset, "samples_offset": samples_offset, "sample_stride": sample_stride,
           "labels_offset": labels_offset, "preload_count": len(preload), "preload_offset": preload_offset,
           "select_seed": select_seed & 0xFFFFFFFF, "select_count": len(selection),
           "select_offset": select_offset}
    image = np.zeros(offset, np.uint8)
    image[:program.external.size] = program.external
    image[config.job_offset:config.job_offset + 4 * job_words] = _words([job[f] for f in JOB_FIELDS])
    table = [(address, flash_at, data.size) for address, flash_at, data in placed]
    image[preload_offset:preload_offset + 12 * len(preload)] = _words(np.array(table).ravel()) if table else []
    if selection:
        image[select_offset:select_offset + 4 * SELECT_ENTRY_WORDS * len(selection)] = \
            _words(np.array(selection, np.int64).ravel())
    for _, flash_at, data in placed:
        image[flash_at:flash_at + data.size] = data
    image[table_offset:table_offset + 1024] = _words(program.table)
    for k, sample in enumerate(images):
        data = layout.activation_bytes(sample)
        if data.size != input_bytes:
            raise JobError(f"sample {k} has {data.size} bytes; the program's input has {input_bytes}")
        at = samples_offset + k * sample_stride
        image[at:at + input_bytes] = data
    image[labels_offset:labels_offset + 4 * len(labels)] = _words(labels)
    return FlashImage(image, job, program.external.size)
