"""Operators under the layers: causal FFT convolution (:mod:`hippos.ops.fftconv`) and the input
checks (:mod:`hippos.ops.checks`), e.g. :func:`check_finite`."""

from hippos.ops.checks import check_finite

__all__ = ["check_finite"]
