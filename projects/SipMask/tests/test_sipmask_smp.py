"""SMP against a direct per-pixel computation: pixel (x, y) of box p takes
sigmoid(coefficients of the sub-region holding its centre (x + 0.5, y + 0.5) . basis[:, y, x]),
0 outside the box."""
import itertools
import math

import pytest
import torch
from sipmask.smp import spatial_mask_prediction

GRIDS = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (4, 4)]


def _per_pixel(basis, coefficients, boxes, grid):
    rows, cols = grid
    m, height, width = basis.shape
    out = torch.zeros(len(boxes), height, width, dtype=torch.float64)
    for p, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        w, h = x2 - x1, y2 - y1
        for y, x in itertools.product(range(height), range(width)):
            cx, cy = x + 0.5, y + 0.5
            for r, c in itertools.product(range(rows), range(cols)):
                if x1 + c * w / cols <= cx < x1 + (c + 1) * w / cols and (
                    y1 + r * h / rows <= cy < y1 + (r + 1) * h / rows
                ):
                    coef = coefficients[p, r * cols + c].tolist()
                    z = sum(coef[k] * basis[k, y, x].item() for k in range(m))
                    out[p, y, x] = 1 / (1 + math.exp(-z))
    return out


BOXES = [
    [1.0, 1.0, 7.0, 5.0],  # integer corners on pixel edges
    [0.3, 1.7, 6.2, 8.9],  # fractional, past the bottom edge
    [-3.5, -2.25, 4.75, 3.5],  # starts outside the top-left corner
    [5.5, 2.0, 12.0, 6.0],  # past the right edge
    [2.0, 2.0, 2.0, 6.0],  # zero width: empty
    [-5.0, -5.0, -1.0, -1.0],  # wholly outside
    [1.5, 0.5, 4.5, 6.5],  # sub-region bounds on pixel centres (3 px wide, 6 px high)
]


@pytest.mark.parametrize("grid", GRIDS)
def test_matches_per_pixel_loop(grid):
    torch.manual_seed(0)
    m, height, width = 3, 7, 9
    basis = torch.randn(m, height, width)
    boxes = torch.tensor(BOXES)
    coefficients = torch.randn(len(boxes), grid[0] * grid[1], m)
    got = spatial_mask_prediction(basis, coefficients, boxes, grid=grid)
    assert got.shape == (len(boxes), height, width)
    expected = _per_pixel(basis.double(), coefficients.double(), boxes.double(), grid)
    torch.testing.assert_close(got.double(), expected, atol=1e-6, rtol=0)
    assert got.min() >= 0 and got.max() <= 1
    assert (got[4] == 0).all() and (got[5] == 0).all()


def test_sub_regions_are_row_major():
    """2x2 on a 4x4 box: each quadrant shows its own coefficient set's sigmoid."""
    basis = torch.ones(1, 4, 4)
    coefficients = torch.tensor([[[0.0], [1.0], [2.0], [3.0]]])  # TL, TR, BL, BR
    got = spatial_mask_prediction(basis, coefficients, torch.tensor([[0.0, 0.0, 4.0, 4.0]]))
    s = torch.sigmoid(torch.tensor([0.0, 1.0, 2.0, 3.0]))
    expected = torch.tensor(
        [[s[0], s[0], s[1], s[1]], [s[0], s[0], s[1], s[1]], [s[2], s[2], s[3], s[3]],
         [s[2], s[2], s[3], s[3]]]
    )  # fmt: skip
    torch.testing.assert_close(got[0], expected)


def test_gradients_and_shapes():
    basis = torch.randn(4, 6, 6, dtype=torch.float64, requires_grad=True)
    coefficients = torch.randn(2, 4, 4, dtype=torch.float64, requires_grad=True)
    boxes = torch.tensor([[0.5, 0.5, 5.0, 5.5], [1.0, 0.0, 6.0, 3.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda b, c: spatial_mask_prediction(b, c, boxes), (basis, coefficients)
    )
    assert spatial_mask_prediction(basis, coefficients[:0], boxes[:0]).shape == (0, 6, 6)
    with pytest.raises(ValueError, match="do not fit grid"):
        spatial_mask_prediction(basis, coefficients, boxes, grid=(3, 3))
