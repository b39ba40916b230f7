"""One training iteration, bit-exact: selection, forward with saving, loss, backward, update.

`Trainer.step(x_q, label)` runs batch-1 training exactly as docs/numerics.md defines it, and is
the oracle the engine and firmware are compared against. It keeps from the forward pass only
what backward needs (masks on the backward path, selected input channels of weight-updated
convs) and applies each layer's update as soon as its gradients exist (section 7.4).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import int_ops
from .fixedpoint import MULTIPLIER_LIMIT, MultiplierVector, add_gradients, shift_signed
from .graph import Add, AvgPool, Conv, INPUT, Model, node_inputs
from .prng import Xorshift32
from .scheme import ChannelSelector, UpdateScheme

ROUNDINGS = ("stochastic", "truncate", "nearest")
INT32_MIN, INT32_MAX = -2 ** 31, 2 ** 31 - 1
MAX_FRACTION_BITS = 62


@dataclass(frozen=True)
class UpdateRule:
    lr: float = 0.05
    qas: bool = True
    rounding: str = "stochastic"

    def __post_init__(self):
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"learning rate must be positive, not {self.lr}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, not {self.rounding!r}")


@dataclass(frozen=True)
class StepResult:
    loss: float
    predicted: int


def update_factors(node: Conv, rule: UpdateRule) -> tuple[np.ndarray, np.ndarray]:
    """The real per-channel factors (u, v) of numerics 7.1, before they become multipliers."""
    s_x, s_w = node.x.scale, np.asarray(node.w_scales, dtype=np.float64)
    if rule.qas:
        return rule.lr * s_x / s_w, rule.lr / (s_x * s_w)
    plain = rule.lr * s_x * s_w
    return plain, plain


def _asked(u, v, weights: bool, biases: bool) -> list[tuple[str, np.ndarray]]:
    return [(kind, f) for kind, f, wanted in (("weight", u, weights), ("bias", v, biases)) if wanted]


def largest_learning_rate(node: Conv, rule: UpdateRule, weights: bool = True, biases: bool = True) -> float:
    """The learning rate at which the first of `node`'s asked-for update factors reaches 2^29
    (every factor of numerics 7.1 is proportional to the learning rate); inf if none asked."""
    asked = _asked(*update_factors(node, rule), weights, biases)
    return min((rule.lr * MULTIPLIER_LIMIT / f.max() for _, f in asked), default=float("inf"))


def update_multipliers(node: Conv, rule: UpdateRule, weights: bool = True, biases: bool = True):
    """(weight multipliers U, bias multipliers V) of numerics 7.1; None for the one not asked.

    A factor of 2^29 or more cannot be a multiplier: with QAS that happens for channels whose
    weight scale is tiny (MCUNet's file has "dead" channels with s_w = 3.9e-9) at an ordinary
    learning rate. The ValueError names the conv, the channel with the largest factor asked for
    and the learning rate below which every factor asked for fits; so ask only for what is
    updated.
    """
    u, v = update_factors(node, rule)
    asked = _asked(u, v, weights, biases)
    if asked:
        kind, factors = max(asked, key=lambda item: item[1].max())
        worst = int(np.argmax(factors))
        if not factors[worst] < MULTIPLIER_LIMIT:
            raise ValueError(
                f"conv {node.name!r}: the {kind} update multiplier of channel {worst} would be "
                f"{factors[worst]:.3g} (learning rate {rule.lr:g}, weight scale {node.w_scales[worst]:.3g}, "
                f"QAS {'on' if rule.qas else 'off'}), above the 2^29 a fixed-point multiplier holds; "
                f"a learning rate below {largest_learning_rate(node, rule, weights, biases):.3g} fits "
                f"every channel of this conv")
    return (MultiplierVector.from_real(u) if weights else None,
            MultiplierVector.from_real(v) if biases else None)


def apply_weight_update(weight_rows: np.ndarray, weight_grad: np.ndarray, e_y: int,
                        U: MultiplierVector, rounding: str, rng: Xorshift32) -> np.ndarray:
    """New int8 weights for the updated part (numerics 7.2); dims (O or C, k, K, K) C-order."""
    shape = (-1,) + (1,) * (weight_grad.ndim - 1)
    D = weight_grad.astype(np.int64) * U.M.reshape(shape)
    if np.any(np.abs(D) >= 2 ** 62):
        raise OverflowError("weight update exceeds the 64-bit range of numerics 7.2")
    r = np.broadcast_to((U.n - e_y).reshape(shape), D.shape)
    # Tiny gradients: at most 62 fraction bits, the excess floored away first (numerics 7.2).
    D = np.where(r > MAX_FRACTION_BITS, D >> np.clip(r - MAX_FRACTION_BITS, 0, 63), D)
    r = np.minimum(r, MAX_FRACTION_BITS)
    W = weight_rows.astype(np.int64)
    up = np.maximum(r, 0)
    if rounding == "stochastic":
        # Draws follow the engine's weight layout (numerics 7.4): [ci][u][v][c], c fastest.
        x = rng.draw(D.size).reshape(D.shape[1:] + D.shape[:1])
        x = np.moveaxis(x, -1, 0).astype(np.int64)
        R = np.where(r <= 32, x >> np.clip(32 - r, 0, 32), x << np.clip(r - 32, 0, 63))
        new = W - np.where(r > 0, (D + R) >> up, D << np.maximum(-r, 0))
    elif rounding == "truncate":
        # trunc(W - D/2^r) toward zero without forming W << r: W - D/2^r = a - f/2^r,
        # a = W - floor(D/2^r), 0 <= f < 2^r; inside (a-1, a) it truncates to a-1 iff a > 0.
        a = W - (D >> up)
        fraction = D - ((D >> up) << up)
        new = np.where(r > 0, a - ((fraction != 0) & (a > 0)), W - (D << np.maximum(-r, 0)))
    else:
        new = W - shift_signed(D, r)
    return np.clip(new, -127, 127).astype(np.int8)


def apply_bias_update(bias: np.ndarray, bias_grad: np.ndarray, e_y: int,
                      V: MultiplierVector) -> np.ndarray:
    delta = shift_signed(bias_grad.astype(np.int64) * V.M, V.n - e_y)
    return np.clip(bias.astype(np.int64) - delta, INT32_MIN, INT32_MAX).astype(np.int32)


class Trainer:
    """Owns a model copy being trained, the selection policy and the stochastic-rounding stream."""

    def __init__(self, model: Model, scheme: UpdateScheme, policy: str = "dynamic",
                 rule: UpdateRule = UpdateRule(), seed: int = 1):
        scheme.check(model)
        self.model = model.copy()
        self.scheme = scheme
        self.rule = rule
        self.selector = ChannelSelector(self.model, scheme, policy, seed=seed * 2 + 1)
        self.sr_rng = Xorshift32(seed * 2 + 2)
        self.table = int_ops.softmax_table(self.model.classifier.y.scale)
        convs = self.model.convs
        self.bias_nodes = {convs[i] for i in scheme.bias_convs(self.model)}
        self.weight_index = {convs[i]: i for i in scheme.weight_convs()}
        if scheme.classifier:
            self.bias_nodes.add(self.model.classifier)
        position = {id(n): p for p, n in enumerate(self.model.nodes)}
        earliest = scheme.earliest_updated(self.model)
        self.start = position[id(convs[earliest])] if earliest is not None else len(self.model.nodes) - 1
        self.producer = {INPUT: -1} | {n.output: p for p, n in enumerate(self.model.nodes)}
        self.shapes = self.model.tensor_shapes()
        self.set_rule(rule)

    def set_rule(self, rule: UpdateRule) -> None:
        """Change the learning rate (the host recompiles the update multipliers)."""
        self.rule = rule
        # Only updated convs get multipliers: a frozen conv's factor may not fit one (MCUNet).
        updated = [(node, node in self.weight_index or (node.is_classifier and self.scheme.classifier),
                    node in self.bias_nodes) for node in self.model.nodes if isinstance(node, Conv)]
        updated = [(node, weights, biases) for node, weights, biases in updated if weights or biases]
        try:
            self.multipliers = {id(node): update_multipliers(node, rule, weights, biases)
                                for node, weights, biases in updated}
        except ValueError as error:
            # One conv's limit is not enough: the user needs the rate every updated conv takes.
            fits = min(largest_learning_rate(node, rule, weights, biases) for node, weights, biases in updated)
            raise ValueError(f"{error}; for scheme {self.scheme.name} on {self.model.name} a learning "
                             f"rate below {fits:.3g} fits every updated conv") from None

    def _weight_selection(self, node: Conv, selection) -> np.ndarray | None:
        if node.is_classifier:
            return np.arange(node.in_channels) if self.scheme.classifier else None
        idx = self.weight_index.get(node)
        return None if idx is None else selection[idx]

    def resume_position(self, tensors: dict) -> int:
        """Position of the first node to run when forward starts from cached `tensors`.

        `tensors` maps names to the int8 outputs of a frozen prefix: every tensor produced
        before the cut and read after it (golden/prefix_cache.py). The cut lies just after the
        latest producer among them and must not pass the earliest updated node.
        """
        if INPUT in tensors:
            return 0
        unknown = [n for n in tensors if n not in self.producer]
        if unknown:
            raise ValueError(f"{self.model.name} has no tensor(s) {', '.join(unknown)}")
        cut = max(self.producer[n] for n in tensors) + 1
        if cut > self.start:
            raise ValueError(f"forward cannot start after node {self.model.nodes[cut - 1].name}: "
                             f"{self.model.nodes[self.start].name} is updated")
        missing = [n for node in self.model.nodes[cut:] for n in node_inputs(node)
                   if self.producer[n] < cut and n not in tensors]
        if missing:
            raise ValueError(f"forward from the cut also needs tensor(s) {', '.join(sorted(set(missing)))}")
        return cut

    def step(self, x_q, label: int) -> StepResult:
        """One iteration on one image (int8 (1, C, H, W)).

        `x_q` may also be a dict of tensors cached at a cut before the earliest updated node
        (the frozen prefix's outputs, see `resume_position`); forward then starts there, with
        bit-identical results.
        """
        model = self.model
        selection = self.selector.select()
        tensors = dict(x_q) if isinstance(x_q, dict) else {INPUT: x_q}
        first = self.resume_position(tensors) if isinstance(x_q, dict) else 0
        masks, saved = {}, {}
        # Frozen prefix and forward: keep masks and selected channels on the backward path only.
        for p, node in enumerate(model.nodes):
            if p < first:
                continue
            y, mask = int_ops.node_forward(node, [tensors[n] for n in node_inputs(node)])
            tensors[node.output] = y
            if p >= self.start:
                masks[id(node)] = mask
                if isinstance(node, Conv):
                    sel = self._weight_selection(node, selection)
                    if sel is not None:
                        saved[id(node)] = (sel, tensors[node.input][:, sel])
        logits = tensors[model.output]
        g, e, loss = int_ops.softmax_cross_entropy_grad(
            logits[0, :, 0, 0], label, self.table, model.classifier.y.scale)
        grads = {model.output: (g.reshape(1, -1, 1, 1), e)}
        predicted = int(logits[0, :, 0, 0].argmax())
        del tensors
        for p in range(len(model.nodes) - 1, self.start - 1, -1):
            node = model.nodes[p]
            if node.output not in grads:
                continue
            g_y, e_y = grads.pop(node.output)
            mask = masks.pop(id(node))
            wants = [self.producer[n] >= self.start for n in node_inputs(node)]
            if isinstance(node, Conv):
                self._conv_step(node, g_y, e_y, mask, saved.pop(id(node), None), wants[0], grads)
            elif isinstance(node, Add):
                for name, want, grad in zip(node.inputs, wants, int_ops.add_backward(g_y, e_y, mask)):
                    if want:
                        self._accumulate(grads, name, grad)
            elif wants[0]:
                hw = self.shapes[node.input][1:]
                self._accumulate(grads, node.input, int_ops.avgpool_backward(g_y, e_y, mask, hw))
        return StepResult(loss, predicted)

    def _conv_step(self, node: Conv, g_y, e_y, mask, saved, want_input_grad, grads):
        sel, x_sel = saved if saved is not None else (None, None)
        input_grad, bias_grad, weight_grad = int_ops.conv_backward(
            node, g_y, e_y, mask, self.shapes[node.input][1:], x_sel, sel, want_input_grad)
        U, V = self.multipliers.get(id(node), (None, None))
        if node in self.bias_nodes:
            node.bias = apply_bias_update(node.bias, bias_grad, e_y, V)
        if weight_grad is not None:
            if node.depthwise:
                node.weight[sel] = apply_weight_update(node.weight[sel], weight_grad, e_y,
                                                       _rows(U, sel), self.rule.rounding, self.sr_rng)
            else:
                node.weight[:, sel] = apply_weight_update(node.weight[:, sel], weight_grad, e_y, U,
                                                          self.rule.rounding, self.sr_rng)
        if input_grad is not None:
            self._accumulate(grads, node.input, input_grad)

    @staticmethod
    def _accumulate(grads, name, grad):
        if name in grads:
            grads[name] = add_gradients(*grads[name], *grad)
        else:
            grads[name] = grad


def _rows(mults: MultiplierVector, rows: np.ndarray) -> MultiplierVector:
    return MultiplierVector(mults.M[rows], mults.n[rows])
