"""One Wishbone classic cycle from an Amaranth testbench, shared by the bus tests."""


async def access(ctx, bus, address, data=None, sel=0xF, limit=200):
    """A read (`data` None) or a write at word `address`; returns (dat_r, ack, err, cycles from
    `stb` to the answer). Drops `cyc`/`stb` for a cycle afterwards."""
    ctx.set(bus.adr, address)
    ctx.set(bus.we, data is not None)
    ctx.set(bus.dat_w, data or 0)
    ctx.set(bus.sel, sel)
    ctx.set(bus.cyc, 1)
    ctx.set(bus.stb, 1)
    for cycles in range(1, limit):
        await ctx.tick()
        if ctx.get(bus.ack) or ctx.get(bus.err):
            result = (ctx.get(bus.dat_r), ctx.get(bus.ack), ctx.get(bus.err), cycles)
            ctx.set(bus.stb, 0)
            ctx.set(bus.cyc, 0)
            await ctx.tick()
            return result
    raise AssertionError(f"no answer at {address:#x} in {limit} cycles")
