"""hippos: structured state space sequence models in plain PyTorch.

HiPPO (arXiv 2008.07669), LSSL (2110.13985), S4 (2111.00396), S4D (2206.11893), H3 (2212.14052).

Dimension glossary (shape comments use the capitals, einops strings the lower case):

====  ==================================================================================
B     batch size
L     sequence length (time steps); ``k`` or ``l`` indexes it
H     channels: independent SISO state space models, one per feature (the papers' H or D)
N     state size (the papers' N); diagonal kernels keep N/2 conjugate modes
R     rank of the low-rank term P in DPLR/NPLR (1 or 2)
T     chunk length in state passing
h     H3 head dimension (head_dim); H' = H/h heads
N_s   taps of H3's shift SSM (its state size)
V     vocabulary size of a language model
====  ==================================================================================

Symbols: ``A, B, C, D`` the continuous SSM ``x' = Ax + Bu, y = Cx + Du`` (D is the skip term,
never a dimension); ``Ā, B̄`` (``Ab, Bb`` in code) its discretization with step ``Δ`` (``dt``);
``K̄`` the convolution kernel ``(C B̄, C Ā B̄, ...)``; ``Λ, P, V`` the DPLR form
``A = V (Λ - P P*) V*``. Layout at every module boundary is ``(B, L, H)``.
"""

from hippos.discretize import discretize, discretize_diag
from hippos.hippo import (
    DIAG_INITS,
    DPLR,
    MEASURES,
    diag_init,
    dplr,
    low_rank_correction,
    transition,
)
from hippos.projection import basis, project, reconstruct, window

__version__ = "0.1.0"

__all__ = [
    "DIAG_INITS",
    "DPLR",
    "MEASURES",
    "basis",
    "diag_init",
    "discretize",
    "discretize_diag",
    "dplr",
    "low_rank_correction",
    "project",
    "reconstruct",
    "transition",
    "window",
]
