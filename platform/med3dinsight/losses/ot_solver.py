"""Forward iterations of the entropic partial OT solver (no autograd); see `losses.partial_ot`.

Dual of the problem, in units of eps (C = cost / eps), with P_ij = exp(F_i + G_j + H - C_ij):
maximise  -sum P + <F, a> + <G, b> + H * mass  over F <= 0, G <= 0, H free.

Two schedules of exact block maximisation reach the same (unique) fixed point:
- "pot": blocks F, G, H in turn, from F = G = 0. This is what POT's Dykstra iterations compute, iterate
  for iterate (its correction matrices are rank-one: a row vector, a column vector, a scalar).
- "joint" (default): blocks (F, H) and (G, H). Each is solved exactly: with R_i the row sums without F
  and H, the mass condition sum_i min(a_i, t R_i) = mass is a monotone piecewise-linear equation in
  t = exp(H), solved by sorting the saturation points a_i / R_i (water filling). Typically 5-20x fewer
  iterations than "pot" (80 -> 15 at B = 256, eps = 0.03).

Shape legend: B batch of independent problems, N rows, M columns.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SCHEDULES = ("joint", "pot")


def solve_potentials(
    cost_BNM: Tensor,
    a_BN: Tensor,
    b_BM: Tensor,
    mass: float,
    eps: float,
    max_iter: int,
    tol: float,
    check_every: int = 10,
    schedule: str = "joint",
) -> tuple[Tensor, Tensor, Tensor, int]:
    """Run the log-domain block-ascent iterations (inputs already validated).

    Args:
        cost_BNM, a_BN, b_BM, mass, eps: the problem (see `partial_ot_plan`).
        max_iter: hard cap on iterations (one iteration updates every block once).
        tol: stop when, for every batch item, the L1 change of the row sums made by the row update plus
            that of the column sums made by the column update is <= tol * mass. These vanish exactly at
            the fixed point (feasible, complementary slack). 0 runs max_iter iterations.
        check_every: iterations between checks (each one is a device-to-host sync).
        schedule: "joint" or "pot" (see the module docstring).

    Returns:
        F_BN, G_BM, H_B (potentials in units of eps) and the number of iterations run.
    """
    with torch.no_grad():
        c_BNM = cost_BNM / eps
        la_BN, lb_BM, lm = a_BN.log(), b_BM.log(), math.log(mass)
        f_BN, g_BM = torch.zeros_like(a_BN), torch.zeros_like(b_BM)
        h_B = lm - torch.logsumexp(-c_BNM, dim=(1, 2))
        it = 0
        while it < max_iter:
            it += 1
            check = tol > 0 and it % check_every == 0
            # rows: lr = log row sums without F and H
            lr_BN = torch.logsumexp(g_BM[:, None, :] - c_BNM, dim=2)
            h_row = _water_fill(la_BN, lr_BN, lm) if schedule == "joint" else h_B
            f_new = torch.clamp(la_BN - lr_BN - h_row[:, None], max=0.0)
            if check:
                err_B = _l1_change(f_BN + h_B[:, None], f_new + h_row[:, None], lr_BN)
            # columns: lc = log column sums without G and H
            lc_BM = torch.logsumexp(f_new[:, :, None] - c_BNM, dim=1)
            h_col = _water_fill(lb_BM, lc_BM, lm) if schedule == "joint" else h_row
            g_new = torch.clamp(lb_BM - lc_BM - h_col[:, None], max=0.0)
            if check:
                err_B = err_B + _l1_change(g_BM + h_row[:, None], g_new + h_col[:, None], lc_BM)
            f_BN, g_BM, h_B = f_new, g_new, h_col
            if schedule == "pot":
                h_B = lm - torch.logsumexp(g_BM + lc_BM, dim=1)
            if check and not (err_B.max().item() > tol * mass):
                break  # `not >` also stops on NaN instead of spinning to max_iter
    return f_BN, g_BM, h_B, it


def _l1_change(old_BK: Tensor, new_BK: Tensor, base_BK: Tensor) -> Tensor:
    """sum_k |exp(new + base) - exp(old + base)|, per batch item."""
    return (torch.exp(new_BK + base_BK) - torch.exp(old_BK + base_BK)).abs().sum(1)


def _water_fill(la_BK: Tensor, lr_BK: Tensor, lm: float) -> Tensor:
    """log t solving sum_k min(a_k, t r_k) = m, from log a, log r (B, K) and log m; (B,).

    With the saturation points s_k = a_k / r_k sorted, f(t) = (sum of a over saturated k) + t * (sum of r
    over the others) is linear between consecutive points; the segment holding m gives t. When m equals
    sum a (everything saturates), the smallest such t, max_k s_k, is returned. Computed in float64 (vectors
    only): m minus the saturated mass cancels badly in float32 and stalls convergence at ~1e-6.
    """
    dtype = la_BK.dtype
    la_BK, lr_BK = la_BK.double(), lr_BK.double()
    ls_BK, order = (la_BK - lr_BK).sort(dim=1)
    la_s, lr_s = la_BK.gather(1, order), lr_BK.gather(1, order)
    num_batch, k = ls_BK.shape
    cum_a = torch.cat([la_s.new_zeros(num_batch, 1), la_s.exp().cumsum(1)], dim=1)  # (B, K+1)
    # log of sum of r over the unsaturated tail; its exponent plus ls never exceeds log(sum a)
    tail = torch.cat([lr_s.flip(1).logcumsumexp(1).flip(1), lr_s.new_full((num_batch, 1), -math.inf)], dim=1)
    f_at_points = cum_a[:, 1:] + torch.exp(ls_BK + tail[:, 1:])
    num_sat = (f_at_points < math.exp(lm)).sum(1, keepdim=True)
    rest = (math.exp(lm) - cum_a.gather(1, num_sat)).clamp_min(torch.finfo(la_BK.dtype).tiny)
    lt = rest.log() - tail.gather(1, num_sat)
    return torch.where(num_sat == k, ls_BK[:, -1:], lt)[:, 0].to(dtype)
