"""Resizing of Swin relative position bias tables when the attention window changes.

CCLM fine-tunes at a higher resolution than it pre-trains (e.g. 224px / window 7 -> 384px / window 12), so every
Swin block's ``relative_position_bias_table`` ([(2w-1)^2, num_heads]) must be resampled when a checkpoint is
loaded. The original code uses BEiT's ``interpolate_relative_pos_embed``: the source offsets are laid out on a
non-uniform grid whose spacing grows geometrically away from the centre (so that the small, frequently used offsets
keep their learned values while the table is stretched to the new extent), and a bicubic ``scipy.interpolate.interp2d``
through those points is evaluated at the integer target offsets.

``interp2d`` was removed in SciPy 1.14 and SciPy is not a dependency here, so the interpolant is rebuilt in torch. On a
rectangular grid ``interp2d(kind="cubic")`` is FITPACK's interpolating (s=0) bicubic spline, i.e. a tensor-product
not-a-knot cubic spline, and FITPACK evaluation clamps points outside the data range to its boundary. Being separable,
the resampled table is ``A @ Z @ A.T`` per head, with ``A`` the 1-D interpolation matrix built below.
"""

import logging
import math

import torch


logger = logging.getLogger(__name__)

__all__ = ["resize_relative_position_bias_table"]


def _square_side(num_pos: int, what: str) -> int:
    side = math.isqrt(num_pos) if num_pos >= 0 else -1
    if side * side != num_pos:
        raise ValueError(f"{what} must be a perfect square (2*window-1)**2, got {num_pos}")
    # An even side has no centre offset; the original code would silently produce a table of the wrong size.
    if side % 2 == 0:
        raise ValueError(f"{what} must be the square of an odd number (2*window-1)**2, got {num_pos} = {side}**2")
    return side


def _geometric_offsets(src_side: int, dst_side: int) -> list[float]:
    """Source offsets -r_n..-r_1, 0, r_1..r_n with geometrically growing gaps 1, q, q^2, ... (BEiT scheme).

    Python floats on purpose: the ratio found by the bisection must match the original to the last bit.
    """
    half = src_side // 2
    left, right = 1.01, 1.5
    # The original keeps the ratio of the *last* iteration (not the interval midpoint after the loop); when the target
    # is much larger than the source it saturates near 1.5 and the outermost source offset stays below the target's.
    while right - left > 1e-6:
        q = (left + right) / 2.0
        if (1.0 - q**half) / (1.0 - q) > dst_side // 2:
            right = q
        else:
            left = q

    dis, cur = [], 1.0
    for i in range(half):
        dis.append(cur)
        cur += q ** (i + 1)
    return [-v for v in reversed(dis)] + [0.0] + dis


def _not_a_knot_matrix(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """[len(t), len(x)] matrix mapping values at the (sorted) knots ``x`` to the not-a-knot cubic spline at ``t``.

    ``t`` is clamped to ``[x[0], x[-1]]`` like FITPACK's evaluation, so nothing is extrapolated.
    """
    n = x.numel()
    h = x[1:] - x[:-1]
    i = torch.arange(1, n - 1)

    # Second derivatives M at the knots solve lhs @ M = rhs @ y: C1 continuity at interior knots ...
    lhs = x.new_zeros(n, n)
    rhs = x.new_zeros(n, n)
    lhs[i, i - 1] = h[:-1] / 6
    lhs[i, i] = (h[:-1] + h[1:]) / 3
    lhs[i, i + 1] = h[1:] / 6
    rhs[i, i - 1] = 1 / h[:-1]
    rhs[i, i] = -1 / h[:-1] - 1 / h[1:]
    rhs[i, i + 1] = 1 / h[1:]
    # ... and not-a-knot ends: the third derivative is continuous at the second and second-last knots.
    lhs[0, :3] = torch.stack([-h[1], h[0] + h[1], -h[0]])
    lhs[-1, -3:] = torch.stack([-h[-1], h[-2] + h[-1], -h[-2]])
    second_deriv = torch.linalg.solve(lhs, rhs)

    t = t.clamp(x[0], x[-1])
    seg = (torch.searchsorted(x, t, right=True) - 1).clamp(0, n - 2)
    hs = h[seg]
    a = (x[seg + 1] - t) / hs
    b = 1 - a
    rows = torch.arange(t.numel())
    out = x.new_zeros(t.numel(), n)
    out[rows, seg] = a
    out[rows, seg + 1] = b
    out += ((a**3 - a) * hs**2 / 6)[:, None] * second_deriv[seg]
    out += ((b**3 - b) * hs**2 / 6)[:, None] * second_deriv[seg + 1]
    return out


def resize_relative_position_bias_table(table: torch.Tensor, dst_num_pos: int) -> torch.Tensor:
    """Resample a Swin ``relative_position_bias_table`` to ``dst_num_pos`` rows, as the original CCLM loader does.

    Args:
        table: ``[(2*w_src-1)**2, num_heads]`` bias table, rows are the (dy, dx) offsets in row-major order.
        dst_num_pos: ``(2*w_dst-1)**2``, the number of rows for the target window size.

    Returns:
        A new float32 ``[dst_num_pos, num_heads]`` tensor on ``table``'s device (a copy when the sizes match).
    """
    if table.ndim != 2:
        raise ValueError(f"relative position bias table must be 2-D [num_pos, num_heads], got {tuple(table.shape)}")
    src_side = _square_side(table.shape[0], "number of rows of the relative position bias table")
    dst_side = _square_side(int(dst_num_pos), "dst_num_pos")
    # The original fits the float32 values (`.float()`), so other dtypes are rounded to float32 first to match it.
    table = table.detach().float()
    if src_side == dst_side:
        return table.clone()
    if src_side < 5:
        raise ValueError(
            f"cannot resize a {src_side}x{src_side} relative position table: the bicubic interpolation needs at least "
            f"5x5 source offsets (window >= 3), as did the original interp2d"
        )
    logger.debug("resize relative position bias %dx%d -> %dx%d", src_side, src_side, dst_side, dst_side)

    src_pos = torch.tensor(_geometric_offsets(src_side, dst_side), dtype=torch.float64)
    dst_pos = torch.arange(dst_side, dtype=torch.float64) - dst_side // 2
    interp = _not_a_knot_matrix(src_pos, dst_pos)

    num_heads = table.shape[1]
    grid = table.cpu().double().t().reshape(num_heads, src_side, src_side)  # [head, y, x]
    out = interp @ grid @ interp.t()
    return out.reshape(num_heads, dst_side * dst_side).t().float().contiguous().to(table.device)
