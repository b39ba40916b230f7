"""Memory planner: peak scratchpad bytes of one training iteration (batch 1).

`plan_memory(model, scheme, resolution)` lays the iteration out as a list of steps (forward
nodes or striped blocks, the loss, backward nodes, and without operator reordering a final
optimizer step), gives every buffer a first and last step, and sums what is live at each step.
The rules below are the contract the engine's compiler has to meet: a compiled program must
never need more scratchpad than `plan_memory` reports for the same settings.

Accounting rules
----------------
Sizes
  * int8 activations and int8 gradients: 1 byte per element.
  * masks (numerics 4.2-4.4, "pre-clamp value in range"): 1 bit per element, packed, rounded
    up to whole bytes per tensor.
  * weight gradients dW: int32, 4 bytes per element, only the selected part (selected input
    channels of a regular conv: C_out x k x K x K; selected channels of a depthwise conv:
    k x K x K). Bias gradients db: int32, 4 bytes per output channel.
  * no alignment or padding of buffers is counted, and no per-tensor metadata (scales,
    exponents, multipliers are a few bytes each, held in registers or a small table).

Parameters
  * Frozen weights and biases live in external flash and are streamed: not counted.
  * Updated parameters live in the scratchpad for the whole iteration (every step): the whole
    int8 weight tensor of every weight-updated conv (the selected channels change from one
    iteration to the next, so all of it must be writable), the int32 bias of every bias-updated
    conv, and, if `scheme.classifier`, the classifier's int8 weights and int32 bias.

Forward (one step per node)
  * A tensor is live from the step that produces it to the step of its last consumer (a skip
    connection keeps a block input alive until its Add). The input image is live from the first
    step. The logits are live until the loss step.
  * A step holds its inputs and its output at once (no in-place operators).
  * Striped inverted residual blocks (`striped=True`): a chain pw1 -> dw -> pw2 of consecutive
    nodes, pw1 a 1x1 stride-1 regular conv whose output feeds only the depthwise conv dw, whose
    output feeds only pw2, a 1x1 stride-1 regular conv, is one step computed in stripes of
    `stripe_rows` output rows of dw. Live: the block input (whole), a pw1-output stripe of
    `(stripe_rows - 1) * stride + K` rows (halo included; at most the tensor's height), a
    dw-output stripe of `stripe_rows` rows, and the block output (whole, being filled). The two
    expanded tensors never exist whole. What backward needs from them (selected channels of the
    dw or pw2 input, masks of the pw1 and dw outputs) is accumulated stripe by stripe into
    whole-size buffers, counted as saved_activations / masks from the block's step on.
    With `striped=False` the three convs are three ordinary steps.

Saved for backward (live from the step that writes them to the backward step that reads them)
  * For each weight-updated conv (and the classifier if `scheme.classifier`): the selected
    channels of its input, `selected_count(conv, ratio) x H x W` int8. It is a separate copy
    taken at the conv's forward step (counted in addition to the input activation during that
    step, even when this conv is the input's last consumer).
  * The 1-bit mask of the output of every node on the backward path: the classifier and every
    Conv/Add/AvgPool downstream of an updated conv, i.e. from the classifier back to and
    including `scheme.earliest_updated(model)`. Nothing is saved for nodes before it.

Backward (one step per node on the backward path, in reverse forward order)
  * A loss step first: logits + their int8 gradient.
  * The output gradient of a node is live from the step that first writes it (its consumer's
    backward step) to the node's own backward step.
  * A conv (or the average pool) writes a new int8 input gradient, unless its input's producer
    is not on the backward path (the earliest updated conv computes no input gradient). If the
    input already has a pending gradient from another consumer (the skip branch of a block),
    the new one is a temporary of the input's size, live during this step only, and is then
    added into the pending one (numerics 5): pending + new + output gradient are all live.
  * An Add masks its output gradient in place and both of its inputs share that buffer (their
    gradients are equal); the residual branch reads it, the skip branch keeps it pending. This
    needs conv backward to apply its mask and channel scale on the fly, never in place. (If an
    Add input is itself produced by an Add, it gets its own copy instead, since that Add would
    mask in place.)
  * The average pool's input gradient is counted at full size C x H x W (no broadcast trick).
  * A bias- or weight-updated conv holds its int32 dW (selected part) and db during its step.
    `reorder=True` (operator reordering, numerics 7.4): the update is applied right after the
    gradients are computed and the buffers are freed at the end of the step.
    `reorder=False` (optimizer step at the end, as MIT's 335 KB baseline): every dW/db buffer
    stays live from its step to a final "optimizer step".

Gradient quantizer (numerics 5)
  * The quantizer needs max|A| of a whole int32 tensor before writing the first int8 output.
    The plan assumes two passes over the producing operation (the first only finds the maximum,
    the second recomputes and writes), so no int32 staging tensor is counted. Likewise the
    channel-scaled g' of numerics 6.2 is recomputed on the fly from g_y, the mask and F[c].

Within a step everything live at any moment of it is counted for the whole step (a step's
figure is an upper bound of its instantaneous peaks). The peak is the largest step total; ties
go to the earliest step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .graph import INPUT, Add, AvgPool, Conv, Model, Node, node_inputs
from .scheme import UpdateScheme, selected_count

CATEGORIES = ("activations", "saved_activations", "masks", "gradients", "weight_gradients",
              "updated_params")


@dataclass(frozen=True)
class Buffer:
    """One scratchpad buffer: live from step `first` to step `last`, both included."""
    name: str
    category: str
    nbytes: int
    first: int
    last: int


@dataclass(frozen=True)
class MemoryPlan:
    peak_bytes: int
    peak_at: str                                  # label of the step where the peak happens
    breakdown: dict[str, int]                     # bytes per category at the peak
    timeline: list[tuple[str, int]]               # (step label, total live bytes)
    model: str
    scheme: str
    resolution: int
    reorder: bool
    striped: bool
    stripe_rows: int
    step_breakdown: list[dict[str, int]] = field(default_factory=list)   # per step, per category
    buffers: list[Buffer] = field(default_factory=list)
    rules: str = "default"                        # "engine": golden/memory_engine.py
    fragmentation_bytes: int = 0                  # engine rules: packed peak above the largest step
    image_external: bool = False                  # engine rules: the image stays in external memory

    @property
    def forward_peak(self) -> int:
        """Largest step total of the forward pass."""
        return max((t for label, t in self.timeline if label.startswith("fwd ")), default=0)

    @property
    def backward_peak(self) -> int:
        """Largest step total from the loss on (backward and the optimizer step), 0 if none."""
        return max((t for label, t in self.timeline if not label.startswith("fwd ")), default=0)

    def allocated(self, category: str) -> int:
        """Total bytes of all buffers of a category over the iteration (not a peak)."""
        known = tuple(self.breakdown) or CATEGORIES
        if category not in known:
            raise ValueError(f"unknown category {category!r}; use one of {known}")
        return sum(b.nbytes for b in self.buffers if b.category == category)


def _numel(shape) -> int:
    return math.prod(shape)


def _mask_bytes(shape) -> int:
    return (_numel(shape) + 7) // 8


def _is_pointwise(node: Node) -> bool:
    return (isinstance(node, Conv) and not node.is_classifier and node.kernel == 1
            and node.groups == 1 and node.stride == 1)


def find_blocks(model: Model) -> list[tuple[Conv, Conv, Conv]]:
    """Inverted residual blocks pw1 -> dw -> pw2 that can be computed in stripes."""
    return chain_blocks(model, _is_pointwise)


def chain_blocks(model: Model, first_ok) -> list[tuple[Conv, Conv, Conv]]:
    """Chains first -> dw -> pw2 of consecutive nodes where `first_ok(first)`, `dw` is a
    depthwise conv fed only by `first`, and the pointwise `pw2` is fed only by `dw`."""
    consumers = model.consumers()
    nodes = model.nodes
    blocks = []
    p = 0
    while p + 2 < len(nodes):
        first, dw, pw2 = nodes[p:p + 3]
        if (first_ok(first) and isinstance(dw, Conv) and dw.depthwise and not dw.is_classifier
                and _is_pointwise(pw2)
                and consumers.get(first.output) == [dw] and dw.input == first.output
                and consumers.get(dw.output) == [pw2] and pw2.input == dw.output):
            blocks.append((first, dw, pw2))
            p += 3
        else:
            p += 1
    return blocks


def plan_memory(model: Model, scheme: UpdateScheme, resolution: int | None = None,
                reorder: bool = True, striped: bool = True, stripe_rows: int = 1,
                rules: str = "default", image_external: bool = True) -> MemoryPlan:
    """Peak scratchpad bytes of one training iteration; see the module docstring for the rules.

    `rules="engine"` follows the engine compiler's allocation instead (golden/memory_engine.py,
    docs/memory.md "Engine rules"): updates are always applied in place as their gradients
    exist and blocks before the backward path are always striped, so `reorder` and `striped`
    must keep their defaults; `image_external` applies to it alone."""
    if rules == "engine":
        if not (reorder and striped):
            raise ValueError("the engine rules follow the compiler, which always reorders updates and "
                             "stripes the blocks before the backward path: reorder and striped must be True")
        from .memory_engine import plan_engine_memory
        return plan_engine_memory(model, scheme, resolution, stripe_rows, image_external)
    if rules != "default":
        raise ValueError(f"rules must be 'default' or 'engine', not {rules!r}")
    scheme.check(model)
    if int(stripe_rows) != stripe_rows or stripe_rows < 1:
        raise ValueError(f"stripe_rows must be a positive integer, not {stripe_rows}")
    stripe_rows = int(stripe_rows)
    shapes = model.tensor_shapes(resolution)
    nodes = model.nodes
    consumers = model.consumers()
    producer: dict[str, Node] = {n.output: n for n in nodes}
    convs = model.convs
    conv_index = {id(c): i for i, c in enumerate(convs)}
    bias_set = scheme.bias_convs(model)
    weight_ratios = scheme.weight_convs()

    def selected(node: Node) -> int | None:
        """Selected input channels of a weight-updated conv, None if its weights are frozen."""
        if not isinstance(node, Conv):
            return None
        if node.is_classifier:
            return node.in_channels if scheme.classifier else None
        i = conv_index[id(node)]
        return selected_count(node, weight_ratios[i]) if i in weight_ratios else None

    def bias_updated(node: Node) -> bool:
        if not isinstance(node, Conv):
            return False
        return scheme.classifier if node.is_classifier else conv_index[id(node)] in bias_set

    updated = [n for n in nodes if selected(n) is not None or bias_updated(n)]

    # Backward path: every node downstream of (or equal to) an updated conv.
    back: set[int] = set()
    stack = list(updated)
    while stack:
        n = stack.pop()
        if id(n) in back:
            continue
        back.add(id(n))
        stack.extend(consumers.get(n.output, []))

    # ---- steps ----
    labels: list[str] = []
    fwd_step: dict[int, int] = {}
    striped_blocks = find_blocks(model) if striped else []
    block_of = {id(b[0]): b for b in striped_blocks}
    inner: dict[str, tuple] = {}            # expanded tensors of striped blocks -> block
    p = 0
    while p < len(nodes):
        n = nodes[p]
        if id(n) in block_of:
            blk = block_of[id(n)]
            for m in blk:
                fwd_step[id(m)] = len(labels)
            inner[blk[0].output] = blk
            inner[blk[1].output] = blk
            labels.append(f"fwd {blk[0].name}+{blk[1].name}+{blk[2].name} "
                          f"[stripes of {stripe_rows}]")
            p += 3
        else:
            fwd_step[id(n)] = len(labels)
            labels.append(f"fwd {n.name}")
            p += 1
    loss_step = None
    bwd_step: dict[int, int] = {}
    if back:
        loss_step = len(labels)
        labels.append("loss")
        for n in reversed(nodes):
            if id(n) in back:
                bwd_step[id(n)] = len(labels)
                labels.append(f"bwd {n.name}")
    final = None
    if not reorder and updated:
        final = len(labels)
        labels.append("optimizer step")
    last_step = len(labels) - 1

    buffers: list[Buffer] = []

    def add(name, category, nbytes, first, last):
        if nbytes > 0:
            buffers.append(Buffer(name, category, int(nbytes), first, last))

    # ---- updated parameters ----
    for n in updated:
        k = selected(n)
        if k is not None:
            add(f"{n.name}.weight", "updated_params", n.weight.size, 0, last_step)
        if bias_updated(n):
            add(f"{n.name}.bias", "updated_params", 4 * n.out_channels, 0, last_step)

    # ---- forward activations ----
    for name, shape in shapes.items():
        if name in inner:
            continue
        first = 0 if name == INPUT else fwd_step[id(producer[name])]
        if name == model.output:
            last = loss_step if loss_step is not None else first
        else:
            users = consumers.get(name, [])
            last = max((fwd_step[id(c)] for c in users), default=first)
        add(name, "activations", _numel(shape), first, last)
    for pw1, dw, pw2 in striped_blocks:
        s = fwd_step[id(pw1)]
        c, h, w = shapes[pw1.output]
        rows = min(h, (stripe_rows - 1) * dw.stride + dw.kernel)
        add(f"{pw1.output} stripe", "activations", c * rows * w, s, s)
        c, h, w = shapes[dw.output]
        add(f"{dw.output} stripe", "activations", c * min(h, stripe_rows) * w, s, s)

    # ---- saved for backward ----
    for n in nodes:
        if id(n) not in back:
            continue
        k = selected(n)
        if k is not None:
            _, h, w = shapes[n.input]
            add(f"{n.name} saved input", "saved_activations", k * h * w,
                fwd_step[id(n)], bwd_step[id(n)])
        add(f"{n.name} mask", "masks", _mask_bytes(shapes[n.output]),
            fwd_step[id(n)], bwd_step[id(n)])

    # ---- backward gradients ----
    # A group is one physical int8 gradient buffer shared by tensors (Add aliasing).
    group_of: dict[str, int] = {}
    groups: list[dict] = []

    def new_group(tensor: str, step: int):
        group_of[tensor] = len(groups)
        groups.append({"first": step, "size": _numel(shapes[tensor]), "members": [tensor]})

    def needs_grad(tensor: str) -> bool:
        return tensor in producer and id(producer[tensor]) in back

    if back:
        new_group(model.output, loss_step)
        for n in reversed(nodes):
            if id(n) not in back:
                continue
            s = bwd_step[id(n)]
            for x in node_inputs(n):
                if not needs_grad(x):
                    continue
                if isinstance(n, Add):
                    if x in group_of:
                        continue                 # added into the pending gradient, no new buffer
                    if isinstance(producer[x], Add):
                        new_group(x, s)          # that Add masks in place: needs its own copy
                    else:
                        g = group_of[n.output]
                        group_of[x] = g
                        groups[g]["members"].append(x)
                elif x in group_of:
                    add(f"d{x} (partial)", "gradients", _numel(shapes[x]), s, s)
                else:
                    new_group(x, s)
        for g in groups:
            last = max(bwd_step[id(producer[t])] for t in g["members"])
            add("d" + "=d".join(g["members"]), "gradients", g["size"], g["first"], last)

        for n in updated:
            s = bwd_step[id(n)]
            end = s if reorder else final
            k = selected(n)
            if k is not None:
                per = n.kernel ** 2 * (1 if n.depthwise else n.out_channels)
                add(f"{n.name} dW", "weight_gradients", 4 * k * per, s, end)
            if bias_updated(n):
                add(f"{n.name} db", "weight_gradients", 4 * n.out_channels, s, end)

    # ---- sum per step ----
    per_step = [{c: 0 for c in CATEGORIES} for _ in labels]
    for b in buffers:
        for s in range(b.first, b.last + 1):
            per_step[s][b.category] += b.nbytes
    totals = [sum(d.values()) for d in per_step]
    peak = max(range(len(totals)), key=lambda i: (totals[i], -i))
    return MemoryPlan(
        peak_bytes=totals[peak], peak_at=labels[peak], breakdown=dict(per_step[peak]),
        timeline=list(zip(labels, totals)), model=model.name, scheme=scheme.name,
        resolution=shapes[INPUT][1], reorder=reorder, striped=striped, stripe_rows=stripe_rows,
        step_breakdown=per_step, buffers=buffers)


_SHORT = {"activations": "act", "saved_activations": "saved", "masks": "masks",
          "gradients": "grads", "weight_gradients": "dW/db", "updated_params": "params",
          "overhead": "other"}


def format_plan(plan: MemoryPlan, timeline: bool = True) -> str:
    """A readable table: settings, peak with its breakdown, and (optionally) every step."""
    categories = list(plan.breakdown) or list(CATEGORIES)
    if plan.rules == "engine":
        settings = (f"engine rules (image {'external' if plan.image_external else 'in the scratchpad'}, "
                    f"{plan.stripe_rows} row{'s' if plan.stripe_rows > 1 else ''} per stripe)")
    else:
        settings = (f"reorder={'on' if plan.reorder else 'off'}, "
                    f"striped={'on (%d rows)' % plan.stripe_rows if plan.striped else 'off'}")
    lines = [
        f"memory plan: {plan.model}, scheme {plan.scheme}, {plan.resolution}x{plan.resolution}, " + settings,
        f"peak {plan.peak_bytes:,} bytes ({plan.peak_bytes / 1024:.1f} KiB) at '{plan.peak_at}' "
        f"(forward peak {plan.forward_peak:,}, backward peak {plan.backward_peak:,})",
    ]
    if plan.fragmentation_bytes:
        lines.append(f"  (packing: the largest step holds {plan.peak_bytes - plan.fragmentation_bytes:,} "
                     f"bytes, the packed buffers span {plan.fragmentation_bytes:,} more)")
    for c in categories:
        lines.append(f"  {c:<18} {plan.breakdown[c]:>10,}")
    if timeline and plan.step_breakdown:
        width = max(len(label) for label, _ in plan.timeline)
        head = f"{'step':<{width}} " + " ".join(f"{_SHORT[c]:>8}" for c in categories) + f" {'total':>9}"
        lines += ["", head, "-" * len(head)]
        top = plan.peak_bytes - plan.fragmentation_bytes
        peak = next(i for i, (label, total) in enumerate(plan.timeline)
                    if label == plan.peak_at and total == top)
        for i, ((label, total), d) in enumerate(zip(plan.timeline, plan.step_breakdown)):
            mark = "  <- peak" if i == peak else ""
            lines.append(f"{label:<{width}} " + " ".join(f"{d[c]:>8,}" for c in categories)
                         + f" {total:>9,}{mark}")
    return "\n".join(lines)
