"""The valid-step mask of a padded batch (shared by S4, attention, BatchNorm, pooling, the CNN)."""

import pytest
import torch

from hippos.ops.checks import check_lengths, valid_steps


def test_valid_steps_marks_each_sequence_prefix():
    lengths = torch.tensor([3, 1, 5, 4])
    m = valid_steps(lengths, 5)
    assert m.dtype == torch.bool and m.shape == (4, 5)
    assert m.tolist() == [[t < n for t in range(5)] for n in lengths.tolist()]


@pytest.mark.parametrize("bad", [torch.tensor([3, 0]), torch.tensor([3, 6]), torch.tensor([3]), torch.tensor([[3, 3]])])
def test_check_lengths_refuses_out_of_range_or_misshaped(bad):
    with pytest.raises(ValueError, match=r"lengths must be \(B,\) = \(2,\) with values in \[1, 5\]"):
        check_lengths(bad, 2, 5)


def test_check_lengths_accepts_the_full_range():
    check_lengths(torch.tensor([1, 5]), 2, 5)
