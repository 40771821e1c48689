"""Tests for the scipy-free port of CCLM's interpolate_relative_pos_embed (Swin relative position bias tables)."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cclm_hf.conversion.relative_position import _not_a_knot_matrix, resize_relative_position_bias_table


def reference_offsets(src_side: int, dst_side: int) -> np.ndarray:
    """Source offsets, transcribed from the original BEiT/CCLM code."""
    left, right = 1.01, 1.5
    while right - left > 1e-6:
        q = (left + right) / 2.0
        gp = (1.0 - q ** (src_side // 2)) / (1.0 - q)
        if gp > dst_side // 2:
            right = q
        else:
            left = q
    dis, cur = [], 1
    for i in range(src_side // 2):
        dis.append(cur)
        cur += q ** (i + 1)
    return np.array([-v for v in reversed(dis)] + [0] + dis, dtype=np.float64)


def target_offsets(dst_side: int) -> np.ndarray:
    t = dst_side // 2.0
    return np.arange(-t, t + 0.1, 1.0)


def brute_force_not_a_knot(x: np.ndarray, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Not-a-knot cubic spline from the 4 coefficients of every piece, solved directly; t clamped to the data range."""
    n = len(x)
    rows, rhs = [], []

    def poly_row(piece, at, deriv):
        row = np.zeros(4 * (n - 1))
        for power in range(deriv, 4):
            coef = np.prod(np.arange(power - deriv + 1, power + 1)) if deriv else 1.0
            row[4 * piece + power] = coef * at ** (power - deriv)
        return row

    for k in range(n - 1):  # interpolation at both ends of each piece
        for end in (k, k + 1):
            rows.append(poly_row(k, x[end], 0))
            rhs.append(y[end])
    for k in range(1, n - 1):  # C1, C2 at interior knots, plus C3 at the second and second-last knot
        for deriv in (1, 2, 3) if k in (1, n - 2) else (1, 2):
            rows.append(poly_row(k - 1, x[k], deriv) - poly_row(k, x[k], deriv))
            rhs.append(0.0)
    coefs = np.linalg.solve(np.array(rows), np.array(rhs)).reshape(n - 1, 4)

    t = np.clip(t, x[0], x[-1])
    piece = np.clip(np.searchsorted(x, t, side="right") - 1, 0, n - 2)
    return sum(coefs[piece, p] * t**p for p in range(4))


def table_from_grid(grid: np.ndarray) -> torch.Tensor:
    """[heads, side, side] (y, x) grid -> [side*side, heads] table, rows row-major like Swin."""
    heads = grid.shape[0]
    return torch.from_numpy(grid.reshape(heads, -1).T.copy())


FIXTURE_CASES = [
    ("inputs", "relpos_table_w7", "relpos_table_w7_to_w12"),  # 13x13 -> 23x23
    ("inputs", "relpos_table_w7", "relpos_table_w7_to_w7"),  # unchanged
    ("inputs", "relpos_table_w4", "relpos_table_w4_to_w6"),  # 7x7 -> 11x11, outermost targets clamped
] + [
    ("original_state_dict", f"vision_encoder.layers.{layer}.blocks.{block}.attn.relative_position_bias_table", None)
    for layer in (0, 1)
    for block in (0, 1)
]  # 7x7 -> 9x9, as done by load_pretrained


@pytest.mark.parametrize("src_file,src_key,dst_key", FIXTURE_CASES)
def test_matches_original_fixture(parity_dir, src_file, src_key, dst_key):
    src = load_file(parity_dir / "retrieval_resize" / f"{src_file}.safetensors")[src_key]
    expected = load_file(parity_dir / "retrieval_resize" / "outputs.safetensors")[dst_key or src_key]

    out = resize_relative_position_bias_table(src, expected.shape[0])

    assert out.dtype == torch.float32
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_equal_size_returns_copy(parity_dir):
    src = load_file(parity_dir / "retrieval_resize" / "inputs.safetensors")["relpos_table_w7"]
    out = resize_relative_position_bias_table(src, src.shape[0])
    torch.testing.assert_close(out, src, atol=0, rtol=0)
    assert out.data_ptr() != src.data_ptr()


@pytest.mark.parametrize("n", [4, 5, 7, 13])
def test_matrix_matches_brute_force_spline(n):
    rng = np.random.default_rng(n)
    x = np.sort(rng.uniform(-5, 5, n))
    y = rng.normal(size=n)
    t = np.concatenate([rng.uniform(x[0] - 1, x[-1] + 1, 50), x])  # also outside the range (clamped) and at knots

    matrix = _not_a_knot_matrix(torch.from_numpy(x), torch.from_numpy(t)).numpy()

    np.testing.assert_allclose(matrix @ y, brute_force_not_a_knot(x, y, t), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("src_side,dst_side", [(7, 9), (13, 23), (7, 11), (5, 9), (13, 7), (9, 5)])
def test_reproduces_bicubic_polynomials(src_side, dst_side):
    # A not-a-knot cubic spline reproduces cubics exactly; outside the source range FITPACK clamps to the boundary.
    heads = 3
    coefs = np.random.default_rng(src_side * 100 + dst_side).normal(size=(heads, 4, 4))
    src = reference_offsets(src_side, dst_side)
    scale = src[-1]

    def poly(ys, xs):
        xs, ys = xs / scale, ys / scale
        return np.einsum("hab,ya,xb->hyx", coefs, ys[:, None] ** np.arange(4), xs[:, None] ** np.arange(4))

    table = table_from_grid(poly(src, src))
    out = resize_relative_position_bias_table(table, dst_side**2)

    dst = np.clip(target_offsets(dst_side), src[0], src[-1])
    expected = table_from_grid(poly(dst, dst)).float()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("src_side,dst_side", [(7, 9), (13, 23), (7, 11), (13, 7)])
def test_keeps_values_at_shared_offsets(src_side, dst_side):
    # Offsets -1, 0, 1 exist in both grids, so the centre 3x3 block must be copied from the source.
    table = torch.randn(src_side**2, 2)
    out = resize_relative_position_bias_table(table, dst_side**2)

    src_grid = table.t().reshape(2, src_side, src_side)
    dst_grid = out.t().reshape(2, dst_side, dst_side)
    sc, dc = src_side // 2, dst_side // 2
    torch.testing.assert_close(
        dst_grid[:, dc - 1 : dc + 2, dc - 1 : dc + 2], src_grid[:, sc - 1 : sc + 2, sc - 1 : sc + 2]
    )


def test_dtype_and_input_untouched():
    table = torch.randn(49, 2, dtype=torch.float64, requires_grad=True)
    before = table.detach().clone()

    out = resize_relative_position_bias_table(table, 81)

    assert out.dtype == torch.float32 and out.shape == (81, 2) and not out.requires_grad
    torch.testing.assert_close(out, resize_relative_position_bias_table(before.float(), 81), atol=0, rtol=0)
    torch.testing.assert_close(table.detach(), before, atol=0, rtol=0)
    assert resize_relative_position_bias_table(table.bfloat16(), 81).dtype == torch.float32


@pytest.mark.parametrize(
    "shape,dst_num_pos,match",
    [
        ((50, 2), 81, "50"),  # rows not a perfect square
        ((36, 2), 81, "36"),  # even side, has no centre offset
        ((49, 2), 80, "80"),  # dst not a perfect square
        ((49, 2), 100, "100"),  # even dst side
        ((49,), 81, r"\(49,\)"),  # not 2-D
        ((1, 49, 2), 81, r"\(1, 49, 2\)"),
        ((9, 2), 25, "3x3"),  # too few source offsets for a bicubic spline
    ],
)
def test_bad_inputs(shape, dst_num_pos, match):
    with pytest.raises(ValueError, match=match):
        resize_relative_position_bias_table(torch.zeros(shape), dst_num_pos)
