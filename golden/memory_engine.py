"""Memory planner, engine rules: peak scratchpad bytes of one training iteration as the engine's
compiler lays it out (docs/memory.md, "Engine rules").

`plan_engine_memory(model, scheme, resolution)` (or `plan_memory(..., rules="engine")`) walks
the model graph once forward and once backward, opening and closing buffers the way
`golden/engine/training.py: compile_training(..., image_external=True)` allocates and frees
them, then packs them as the compiler's `plan_offsets` does (largest first, lowest offset clear
of every buffer alive at the same time). It is an accounting over the graph: it never calls the
compiler, it only shares the compiler's constants (alignment, parameter table width, lanes).

Contract: the compiled iteration's `program.forward.peak_bytes` never exceeds `peak_bytes`
(tests/test_memory.py checks it on the built-in model and MIT's presets). With the default one
row per stripe the plan reproduces the compiler's first layout; `compile_training` then widens
stripes only while its peak does not rise, so the compiled peak can be lower, never higher
(without a `peak_budget`: a budget lets it trade peak for fewer halo rows, up to the budget).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .engine.backward import path_nodes
from .engine.compiler import ALIGN, overwrite_lead, stripe_rows
from .engine.config import DEFAULT
from .engine.program import PARAM_BYTES_PER_CHANNEL
from .graph import INPUT, Conv, Model, node_inputs
from .memory import CATEGORIES, Buffer, MemoryPlan, chain_blocks
from .scheme import UpdateScheme, selected_count

# the engine's extra category: channel lists, the constant byte 1, the PRNG state, parameter
# tables of resident convs, and the lane row kept free above the highest buffer
ENGINE_CATEGORIES = CATEGORIES + ("overhead",)


def _aligned(nbytes: int) -> int:
    """Bytes the compiler's allocator reserves for `nbytes`: a multiple of ALIGN, ALIGN at least."""
    return max(ALIGN, -(-nbytes // ALIGN) * ALIGN)


@dataclass
class _Open:
    category: str
    nbytes: int
    first: int
    order: int
    inside: str | None          # the buffer it lies in (an output written over its input)


class _Ledger:
    """Buffers opened and closed in steps; a buffer opened before the first step starts at 0."""

    def __init__(self):
        self.labels: list[str] = []
        self.open: dict[str, _Open] = {}
        self.closed: list[tuple[str, _Open, int]] = []

    def step(self, label: str) -> None:
        self.labels.append(label)

    @property
    def now(self) -> int:
        return max(0, len(self.labels) - 1)

    def alloc(self, name: str, category: str, nbytes: int, inside: str | None = None) -> None:
        if name in self.open:
            raise AssertionError(f"{name} is already open")
        order = len(self.open) + len(self.closed)
        self.open[name] = _Open(category, _aligned(nbytes), self.now, order, inside)

    def free(self, name: str) -> None:
        self.closed.append((name, self.open.pop(name), self.now))

    def free_if_open(self, name: str) -> None:
        if name in self.open:
            self.free(name)

    def finish(self) -> list[tuple[str, _Open, int]]:
        """Every buffer with its last step; those never freed last to the final step."""
        last = len(self.labels) - 1
        return self.closed + [(name, b, last) for name, b in self.open.items()]


def _backward_path(model: Model, scheme: UpdateScheme) -> tuple[int, set[int]]:
    """(position of the earliest updated node, positions on the backward path): the nodes from
    it on whose output reaches the logits. The classifier alone if no conv is updated."""
    earliest = scheme.earliest_updated(model)
    if earliest is None:
        start = len(model.nodes) - 1
    else:
        target = model.convs[earliest]
        start = next(p for p, n in enumerate(model.nodes) if n is target)
    return start, path_nodes(model, start)


class _Walk:
    """The iteration as the compiler builds it: buffers opened and freed in the ledger."""

    def __init__(self, model: Model, scheme: UpdateScheme, resolution, stripe_rows: int,
                 image_external: bool):
        self.model, self.scheme, self.rows = model, scheme, stripe_rows
        self.image_external = image_external
        self.shapes = model.tensor_shapes(resolution)
        self.ledger = _Ledger()
        self.start, self.path = _backward_path(model, scheme)
        self.position = {id(n): p for p, n in enumerate(model.nodes)}
        self.producer = {INPUT: -1} | {n.output: p for p, n in enumerate(model.nodes)}
        self.last_reader: dict[str, int] = {}
        for p, n in enumerate(model.nodes):
            for x in node_inputs(n):
                self.last_reader[x] = p
        convs = model.convs
        head = model.classifier
        ratios = scheme.weight_convs()
        self.ratio = {convs[i].name: r for i, r in ratios.items()}
        if scheme.classifier:
            self.ratio[head.name] = 1.0
        self.bias_updated = {convs[i].name for i in scheme.bias_convs(model)}
        if scheme.classifier:
            self.bias_updated.add(head.name)
        self.kept = {model.nodes[p].input for p in self.path
                     if isinstance(model.nodes[p], Conv) and self.ratio.get(model.nodes[p].name) == 1.0}
        self.masked = {model.nodes[p].output for p in self.path}
        self.striped = self._striped_blocks()
        self.streamed = image_external and INPUT not in self.kept and all(
            id(n) in self.striped for n in model.nodes if INPUT in node_inputs(n))
        self.lead = self._leads()

    def numel(self, tensor: str) -> int:
        return math.prod(self.shapes[tensor])

    # ---------------------------------------------------------------- forward
    def _striped_blocks(self) -> dict[int, tuple[Conv, Conv, Conv]]:
        blocks = chain_blocks(self.model, lambda first: isinstance(first, Conv) and not first.depthwise
                              and not first.is_classifier)
        return {id(b[0]): b for b in blocks
                if not any(self.position[id(n)] in self.path for n in b)
                and self.shapes[b[1].output][1] > self.rows}

    def _leads(self) -> dict[str, int]:
        """Block input -> lead bytes, for every striped block that writes its output over it."""
        leads = {}
        for first, dw, pw2 in self.striped.values():
            x = first.input
            if x in self.kept or (x == INPUT and self.streamed):
                continue
            if self.last_reader[x] != self.position[id(first)]:
                continue
            lead = overwrite_lead(first, dw, pw2, self.shapes, self.rows)
            if self.numel(pw2.output) <= lead + self.numel(x):
                leads[x] = lead
        return leads

    def place(self, tensor: str, category: str = "activations") -> None:
        """A whole tensor (with its lead when a striped block will write over it)."""
        category = "saved_activations" if tensor in self.kept else category
        self.ledger.alloc(tensor, category, self.lead.get(tensor, 0) + self.numel(tensor))

    def release_inputs(self, node) -> None:
        """Free the inputs `node` reads last, unless the backward pass reads them."""
        p = self.position[id(node)]
        for x in node_inputs(node):
            if self.last_reader[x] == p and x not in self.kept:
                self.ledger.free_if_open(x)

    def forward(self) -> None:
        ledger, model = self.ledger, self.model
        if not self.streamed:
            ledger.step(f"fwd {INPUT}")          # the image copied in before the first node
            self.place(INPUT)
        skip = 0
        for node in model.nodes:
            if skip:
                skip -= 1
                self.release_inputs(node)
                continue
            if id(node) in self.striped:
                self._striped_step(*self.striped[id(node)])
                skip = 2
            else:
                self._node_step(node)
            self.release_inputs(node)

    def _striped_step(self, first: Conv, dw: Conv, pw2: Conv) -> None:
        ledger, shapes, rows = self.ledger, self.shapes, self.rows
        ledger.step(f"fwd {first.name}+{dw.name}+{pw2.name} [stripes of {rows}]")
        x = first.input
        if x in self.lead:
            # written over the input: counted once the input is freed (same packing offset)
            ledger.alloc(pw2.output, "activations", self.numel(pw2.output), inside=x)
        else:
            self.place(pw2.output)
        c_exp, h, w = shapes[first.output]
        _, _, wo = shapes[dw.output]
        ledger.alloc(f"stripe:{first.output}", "activations",
                     c_exp * min(h, (rows - 1) * dw.stride + dw.kernel) * w)
        ledger.alloc(f"stripe:{dw.output}", "activations", c_exp * rows * wo)
        names = [f"stripe:{first.output}", f"stripe:{dw.output}"]
        if self.streamed and x == INPUT:
            c_in, _, w_in = shapes[x]
            tallest = max(x1 - x0 for *_, x0, x1 in stripe_rows(first, dw, shapes, rows))
            ledger.alloc(f"stripe:{x}", "activations", tallest * w_in * c_in)
            names.append(f"stripe:{x}")
        for name in names:
            ledger.free(name)

    def _node_step(self, node) -> None:
        ledger = self.ledger
        ledger.step(f"fwd {node.name}")
        self.place(node.output)
        resident = isinstance(node, Conv) and (node.name in self.ratio or node.name in self.bias_updated)
        if resident:
            ledger.alloc(f"table:{node.name}", "overhead", PARAM_BYTES_PER_CHANNEL * node.out_channels)
        if node.output in self.masked:
            ledger.alloc(f"mask:{node.output}", "masks", -(-self.numel(node.output) // 8))
        ratio = self.ratio.get(node.name, 0.0) if isinstance(node, Conv) else 0.0
        if 0 < ratio < 1:
            _, h, w = self.shapes[node.input]
            ledger.alloc(f"saved:{node.name}", "saved_activations", selected_count(node, ratio) * h * w)
        if resident:
            ledger.free(f"table:{node.name}")

    # ---------------------------------------------------------------- iteration-long
    def resident(self) -> None:
        """Buffers allocated before the forward pass, in the compiler's order."""
        ledger, model = self.ledger, self.model
        classes = model.classifier.out_channels
        ledger.alloc("gradient", "gradients", classes)
        ledger.alloc("exponent", "gradients", 4)
        ledger.alloc("prng", "overhead", 4)
        for i, ratio in self.scheme.weight_convs().items():
            if ratio < 1.0:
                conv = model.convs[i]
                ledger.alloc(f"list:{conv.name}", "overhead", 2 * selected_count(conv, ratio))
        for node in model.nodes:
            if not isinstance(node, Conv):
                continue
            if node.name in self.ratio:
                ledger.alloc(f"weight:{node.name}", "updated_params", node.weight.size)
            if node.name in self.ratio or node.name in self.bias_updated:
                ledger.alloc(f"params:{node.name}", "updated_params", 4 * node.out_channels)
        # the byte 1 that copy descriptors multiply by; the compiler keeps it whenever anything
        # is resident, the image is external or frozen weights may be staged (its default)
        ledger.alloc("ones", "overhead", ALIGN)

    # ---------------------------------------------------------------- backward
    def _backward_counts(self) -> None:
        """Contributions each gradient waits for; weight updates reading each kept input."""
        nodes = [self.model.nodes[p] for p in sorted(self.path)]
        self.expected: dict[str, int] = {}
        self.readers: dict[str, int] = {}
        for node in nodes:
            for x in node_inputs(node):
                if self.wants(x):
                    self.expected[x] = self.expected.get(x, 0) + 1
            if isinstance(node, Conv) and self.ratio.get(node.name) == 1.0:
                self.readers[node.input] = self.readers.get(node.input, 0) + 1
        self.pending: dict[str, tuple[str, int]] = {}     # partial sum's buffer, contributions so far
        self.finished: dict[str, str | None] = {self.model.output: None}   # the logits gradient stays
        self.counter = 0

    def backward(self) -> None:
        """The nodes on the backward path in reverse; each frees its output gradient at its end."""
        self._backward_counts()
        self.ledger.step("loss")                  # the host writes the logits gradient
        for p in sorted(self.path, reverse=True):
            node = self.model.nodes[p]
            G = self.finished.pop(node.output)
            if isinstance(node, Conv):
                self._conv(node, G)
            else:
                self.ledger.step(f"bwd {node.name}")
                for x in node_inputs(node):       # the pool's broadcast, or the Add's copy per input
                    if self.wants(x):
                        self.contribute(x)
            self._free_gradient(G)

    def wants(self, tensor: str) -> bool:
        return self.producer[tensor] >= self.start

    def _new_gradient(self, label: str, nbytes: int) -> str:
        self.counter += 1
        name = f"grad{self.counter}:{label}"
        self.ledger.alloc(name, "gradients", nbytes)
        self.ledger.alloc(name + ":e", "gradients", 4)
        return name

    def _free_gradient(self, name: str | None) -> None:
        if name is not None and name in self.ledger.open:
            self.ledger.free(name)
            self.ledger.free(name + ":e")

    def contribute(self, tensor: str) -> None:
        """One contribution to `tensor`'s gradient: a new buffer, summed into a pending one."""
        previous, count = self.pending.pop(tensor, (None, 0))
        last = count + 1 == self.expected[tensor]
        target = self._new_gradient(tensor, self.numel(tensor))
        result = target
        if previous is not None:
            result = self._new_gradient(tensor, self.numel(tensor))
            self._free_gradient(previous)
            self._free_gradient(target)
        if last:
            self.finished[tensor] = result
            self.ledger.free_if_open(f"mask:{tensor}")
        else:
            self.pending[tensor] = (result, count + 1)

    def _conv(self, node: Conv, G: str | None) -> None:
        ledger = self.ledger
        ratio = self.ratio.get(node.name, 0.0)
        if self.wants(node.input):
            c, ho, wo = self.shapes[node.output]
            s = node.stride
            ledger.step(f"bwd {node.name} g'")
            prescaled = self._new_gradient(f"{node.name}:g'", c * s * ho * s * wo)
            if not ratio:
                self._free_gradient(G)           # bias update done first: G is dead once prescaled
            ledger.step(f"bwd {node.name} dX")
            self.contribute(node.input)
            self._free_gradient(prescaled)
        else:
            ledger.step(f"bwd {node.name}")
        if ratio:
            if f"saved:{node.name}" in ledger.open:
                ledger.free(f"saved:{node.name}")
            else:
                self.readers[node.input] -= 1
                if not self.readers[node.input]:
                    ledger.free_if_open(node.input)


def plan_engine_memory(model: Model, scheme: UpdateScheme, resolution: int | None = None,
                       stripe_rows: int = 1, image_external: bool = True,
                       lanes: int = DEFAULT.lanes) -> MemoryPlan:
    """Peak scratchpad bytes of one compiled training iteration (docs/memory.md, "Engine
    rules"): the packed span of every buffer plus one lane row. Not below the compiler's
    `program.forward.peak_bytes` for the same model, scheme, image placement and `lanes`."""
    scheme.check(model)
    if int(stripe_rows) != stripe_rows or stripe_rows < 1:
        raise ValueError(f"stripe_rows must be a positive integer, not {stripe_rows}")
    walk = _Walk(model, scheme, resolution, int(stripe_rows), image_external)
    walk.resident()
    walk.forward()
    walk.backward()
    return _summarize(walk, lanes, image_external)


def _pack(records: list[tuple[str, _Open, int]]) -> int:
    """Bytes spanned by the compiler's packing (`plan_offsets`) of these buffers: groups (a buffer
    with those inside it) largest first, ties in allocation order, each at the lowest offset
    where every member is clear of the placed buffers whose steps overlap its own."""
    by_name = {name: (b, last) for name, b, last in records}

    def root(name):
        while by_name[name][0].inside is not None:
            name = by_name[name][0].inside
        return name

    groups: dict[str, list[str]] = {}
    for name, _, _ in records:
        groups.setdefault(root(name), []).append(name)
    order = sorted(groups, key=lambda r: (-max(by_name[n][0].nbytes for n in groups[r]), by_name[r][0].order))
    placed: list[tuple[int, int, int, int]] = []          # (offset, bytes, first step, last step)
    for group in order:
        members = [(by_name[n][0].nbytes, by_name[n][0].first, by_name[n][1]) for n in groups[group]]
        clashes = [sorted((o, n) for o, n, f, l in placed if f <= hi and lo <= l) for _, lo, hi in members]
        candidates = sorted({0} | {o + n for clash in clashes for o, n in clash})
        at = next(c for c in candidates
                  if all(not (o < c + need and c < o + n)
                         for (need, _, _), clash in zip(members, clashes) for o, n in clash))
        placed += [(at, need, lo, hi) for need, lo, hi in members]
    return max((o + n for o, n, _, _ in placed), default=0)


def _summarize(walk: _Walk, lanes: int, image_external: bool) -> MemoryPlan:
    """Step totals (a buffer inside another counts once its host is freed), the packed peak."""
    ledger = walk.ledger
    records = ledger.finish()
    last_of = {name: last for name, _, last in records}
    buffers = [Buffer("lane row kept free", "overhead", lanes, 0, len(ledger.labels) - 1)]
    for name, b, last in records:
        first = b.first if b.inside is None else max(b.first, last_of[b.inside] + 1)
        if first <= last:
            buffers.append(Buffer(name, b.category, b.nbytes, first, last))
    per_step = [{c: 0 for c in ENGINE_CATEGORIES} for _ in ledger.labels]
    for b in buffers:
        for s in range(b.first, b.last + 1):
            per_step[s][b.category] += b.nbytes
    totals = [sum(d.values()) for d in per_step]
    top = max(range(len(totals)), key=lambda i: (totals[i], -i))
    peak = _pack(records) + lanes
    return MemoryPlan(
        peak_bytes=peak, peak_at=ledger.labels[top], breakdown=dict(per_step[top]),
        timeline=list(zip(ledger.labels, totals)), model=walk.model.name, scheme=walk.scheme.name,
        resolution=walk.shapes[INPUT][1], reorder=True, striped=bool(walk.striped), stripe_rows=walk.rows,
        step_breakdown=per_step, buffers=buffers, rules="engine",
        fragmentation_bytes=peak - totals[top], image_external=image_external)
