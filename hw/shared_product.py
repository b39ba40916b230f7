"""One registered 32 x 32-bit product per lane, shared by the lane's epilogue units.

The requantizer, the weight updater, the bias updater and the gradient scale each need one
signed product of a 32-bit operand and an unsigned 32-bit (or narrower) factor, registered once:
four 33 x 33 products are 16 MULT18X18D per lane on an ECP5. A descriptor runs one epilogue, so
one product per lane serves them all (docs/fpga.md: the DSP budget).

A unit built with `shared_product=True` has three more ports and no multiplier of its own:
`product_valid` and the operands `product_a` (signed) and `product_b` (unsigned) out, in the
cycle its own product register would have loaded them, and `product` (signed 64) in, the
product one cycle later, exactly where its own register's output was. `SharedProduct` forms
that register from a list of requests in priority order: the first whose `valid` is high wins,
the last is the default. Timing is the same as a unit's own product register: operands in cycle
t, product from t+1.
"""
from amaranth.hdl import Elaboratable, Module, Mux, Signal, signed
from amaranth.lib.wiring import In, Out

PRODUCT_PORTS = {"product_valid": Out(1), "product_a": Out(signed(32)), "product_b": Out(32),
                 "product": In(signed(64))}


def unit_members(ports: dict, shared_product: bool) -> dict:
    """A unit's ports (its PORTS), with the shared-product ports if asked."""
    members = dict(ports)
    if shared_product:
        members.update(PRODUCT_PORTS)
    return members


def registered_product(unit, m: Module, valid, a, b, name: str):
    """a * b, registered (signed 64): the unit's own register, or the shared one through its ports."""
    if getattr(unit, "shared_product", False):
        m.d.comb += [unit.product_valid.eq(valid), unit.product_a.eq(a), unit.product_b.eq(b)]
        return unit.product
    product = Signal(signed(64), name=name, reset_less=True)
    m.d.sync += product.eq(a * b)
    return product


class SharedProduct(Elaboratable):
    """`product` <= a * b of the first request (valid, a, b) whose valid is high, else the last's.

    Requests are (valid, a signed 32, b unsigned 32) Values. The product is signed 64: every
    caller's |a * b| < 2^63.
    """

    def __init__(self, requests: list):
        if not requests:
            raise ValueError("a shared product needs at least one request")
        self.requests = requests
        self.product = Signal(signed(64))

    def elaborate(self, platform):
        m = Module()
        _, a, b = self.requests[-1]
        for valid, request_a, request_b in reversed(self.requests[:-1]):
            a, b = Mux(valid, request_a, a), Mux(valid, request_b, b)
        operand_a, operand_b = Signal(signed(32)), Signal(32)
        m.d.comb += [operand_a.eq(a), operand_b.eq(b)]
        m.d.sync += self.product.eq(operand_a * operand_b)
        return m
