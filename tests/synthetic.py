"""Random int8 convs for the tests' synthetic models (same draws, in the same order, as the
per-test factories they replace)."""
import numpy as np

from golden.graph import Conv


def conv_factory(rng: np.random.Generator, bias_bound: int, scale_range: tuple[float, float]):
    """conv(name, source, c_in, c_out, k, stride, groups, x, y, classifier=False) -> a Conv with
    weights uniform in [-127, 127], biases in [-bias_bound, bias_bound) and per-channel scales
    uniform in `scale_range`, drawn from `rng`."""
    def conv(name, source, c_in, c_out, k, stride, groups, x, y, classifier=False):
        w = rng.integers(-127, 128, size=(c_out, c_in // groups, k, k)).astype(np.int8)
        b = rng.integers(-bias_bound, bias_bound, size=c_out).astype(np.int32)
        s = rng.uniform(*scale_range, size=c_out)
        return Conv(name, source, name, w, b, s, stride, groups, x, y, classifier)
    return conv
