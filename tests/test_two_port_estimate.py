"""golden/engine/two_port.py: the cycles a two-port (unpumped) scratchpad would add, on
descriptors whose answer is worked by hand from the rule in its docstring."""
from golden.engine import program as isa
from golden.engine.config import DEFAULT
from golden.engine.two_port import extra_cycles, program_estimate


def mac(counts, **fields):
    return isa.Descriptor(opcode=isa.MAC, counts=counts, **fields)


def test_a_forward_conv_pays_one_cycle_per_output_vector_but_the_last():
    # 3 x 4 output vectors, a reduction of 16: 11 vectors write while B still reads
    conv = mac([3, 4, 1, 16, 1, 1])
    assert extra_cycles(conv, DEFAULT) == 11
    # masks written: 2 write cycles, 1 of them already in the pause after each vector
    assert extra_cycles(mac([3, 4, 1, 16, 1, 1], flags=isa.FLAG_WRITE_MASK), DEFAULT) == 11
    # B streamed from external memory, all ones, or a sums descriptor: B's port is free
    for free in (dict(flags=isa.FLAG_B_EXTERNAL), dict(flags=isa.FLAG_B_ONES),
                 dict(mode=isa.SUMS, epilogue=isa.GRADIENT)):
        assert extra_cycles(mac([3, 4, 1, 16, 1, 1], **free), DEFAULT) == 0


def test_updates_and_gradients_pay_for_their_old_value_reads():
    # a weight update of reduction 1: the pause is S - 1 = 3 cycles, enough for the write and
    # the old weight's read; of reduction 8 there is no pause: 2 extra a vector (9 vectors)
    assert extra_cycles(mac([10, 1, 1, 1, 1, 1], epilogue=isa.UPDATE), DEFAULT) == 0
    assert extra_cycles(mac([10, 1, 1, 8, 1, 1], epilogue=isa.UPDATE), DEFAULT) == 18
    # a bias update: 4 write cycles (int32) + 5 old rows - a pause of 3 = 6 a vector
    assert extra_cycles(mac([2, 1, 1, 4, 1, 1], epilogue=isa.BIAS_UPDATE), DEFAULT) == 6
    # a gradient multiplying by its mask: 1 write + 1 mask read a vector in pass 2, the mask
    # read again in pass 1 (4 vectors: 3 pay)
    gradient = mac([4, 1, 1, 9, 1, 1], mode=isa.ELEMENTWISE, epilogue=isa.GRADIENT, flags=isa.FLAG_MASK_IN)
    assert extra_cycles(gradient, DEFAULT) == 3 * 2 + 3 * 1


def test_program_estimate_sums_descriptors_and_leaves_end_out():
    program = [mac([3, 4, 1, 16, 1, 1]), mac([10, 1, 1, 8, 1, 1], epilogue=isa.UPDATE), isa.Descriptor()]
    today, extra = program_estimate(program, DEFAULT)
    assert extra == 11 + 18 and today > 12 * 16 + 10 * 8
