"""golden/engine/cycles.py with the two-port scratchpad: the pause cycle it adds after each output
vector but the last, on descriptors whose answer is worked by hand from the rule in docs/engine.md
("The two-port scratchpad"). The RTL is held to the same model by tests/test_engine_rtl.py."""
import dataclasses

import pytest

from golden.engine import program as isa
from golden.engine.config import DEFAULT, TWO_PORT, EngineConfig
from golden.engine.cycles import descriptor_cycles, vector_pause


def mac(counts, **fields):
    return isa.Descriptor(opcode=isa.MAC, counts=counts, **fields)


def added(d):
    """Cycles the two-port scratchpad adds to descriptor `d` (the same D and S as the pumped)."""
    return descriptor_cycles(d, TWO_PORT).total - descriptor_cycles(d, DEFAULT).total


def test_a_forward_conv_pauses_once_more_after_each_output_vector_but_the_last():
    # 3 x 4 output vectors, a reduction of 16, B (weights) on the scratchpad: 11 pauses
    assert added(mac([3, 4, 1, 16, 1, 1])) == 11
    assert vector_pause(mac([3, 4, 1, 16, 1, 1]), TWO_PORT) == 1
    # masks written: 2 write cycles, so 2 pause cycles instead of 1
    assert vector_pause(mac([3, 4, 1, 16, 1, 1], flags=isa.FLAG_WRITE_MASK), TWO_PORT) == 2
    assert added(mac([3, 4, 1, 16, 1, 1], flags=isa.FLAG_WRITE_MASK)) == 11


@pytest.mark.parametrize("flags", [isa.FLAG_B_EXTERNAL, isa.FLAG_B_ONES])
def test_b_off_the_scratchpad_leaves_port_2_to_the_writes(flags):
    assert added(mac([3, 4, 1, 16, 1, 1], flags=flags)) == 0


def test_updates_pause_for_their_old_value_reads():
    # a weight update of reduction 1 already pauses S - 1 = 3 cycles; of reduction 8 it did
    # not pause and now pauses 1 (10 vectors: 9 pauses)
    assert added(mac([10, 1, 1, 1, 1, 1], epilogue=isa.UPDATE)) == 0
    assert vector_pause(mac([10, 1, 1, 8, 1, 1], epilogue=isa.UPDATE), TWO_PORT) == 1
    assert added(mac([10, 1, 1, 8, 1, 1], epilogue=isa.UPDATE)) == 9
    # a bias update: 4 write cycles and 4 old rows, 4 pause cycles instead of 3 (2 vectors)
    assert vector_pause(mac([2, 1, 1, 4, 1, 1], epilogue=isa.BIAS_UPDATE), TWO_PORT) == 4
    assert added(mac([2, 1, 1, 4, 1, 1], epilogue=isa.BIAS_UPDATE)) == 1


def test_gradients_pause_in_both_passes_when_they_read_masks():
    masked = mac([4, 1, 1, 9, 1, 1], mode=isa.ELEMENTWISE, epilogue=isa.GRADIENT, flags=isa.FLAG_MASK_IN)
    assert vector_pause(masked, TWO_PORT, writing=False) == 1 and vector_pause(masked, TWO_PORT) == 1
    assert added(masked) == 3 + 3
    # without a mask, pass 1 (which writes nothing) runs as before; pass 2 writes while B reads
    plain = mac([4, 1, 1, 9, 1, 1], mode=isa.ELEMENTWISE, epilogue=isa.GRADIENT)
    assert vector_pause(plain, TWO_PORT, writing=False) == 0
    assert added(plain) == 3


def test_the_pumped_and_plain_schedules_are_unchanged():
    # the pause of every kind above is the single-port schedule's without the two-port flag
    plain = dataclasses.replace(DEFAULT, scratchpad_pumped=False)
    for d in (mac([3, 4, 1, 16, 1, 1]), mac([10, 1, 1, 8, 1, 1], epilogue=isa.UPDATE),
              mac([2, 1, 1, 4, 1, 1], epilogue=isa.BIAS_UPDATE)):
        assert vector_pause(d, DEFAULT) == vector_pause(d, plain)
    assert vector_pause(mac([3, 4, 1, 16, 1, 1]), DEFAULT) == 0


def test_a_scratchpad_is_pumped_or_two_port_not_both():
    with pytest.raises(ValueError, match="either pumped or two-port"):
        EngineConfig(scratchpad_pumped=True, scratchpad_two_port=True)
