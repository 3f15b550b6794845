"""Entropic partial optimal transport: a batched log-domain solver with an implicit-gradient backward.

Problem (Benamou et al. 2015, prop. 5; the one POT's `ot.partial.entropic_partial_wasserstein` solves):

    P = argmin <P, cost> + eps * sum P log P   s.t.  P 1 <= a,  P^T 1 <= b,  1^T P 1 = mass,  P >= 0

POT runs Dykstra's iterated KL projections on dense correction matrices. For these three constraint
sets the corrections are a row vector, a column vector and a scalar, so the iterates are block
coordinate ascent on three dual potentials; in units of eps (C = cost / eps):

    P_ij = exp(F_i + G_j + H - C_ij),  F <= 0,  G <= 0
    F = min(log a - LSE_j(G + H - C), 0)
    G = min(log b - LSE_i(F + H - C), 0)
    H = log mass - LSE_ij(F + G - C)

`schedule="pot"` runs exactly these from F = G = 0 (with `tol=0` and POT's `max_iter` the plans agree
iterate for iterate); the default "joint" schedule updates H together with F and with G, exactly, and
needs several times fewer iterations (`losses.ot_solver`). Only log-sum-exps are taken, so nothing
under- or overflows for small eps or unnormalised costs (POT's default solver returns NaN there).

Convergence is linear but slows down like every Sinkhorn-type method when the plan is nearly a
permutation (off-support entries below ~1e-7 of the mass: cost gaps >> eps); the iteration cap then
stops it, as POT's always-1000 iterations do.

Backward (implicit differentiation): at the fixed point the rows with F < 0 and columns with G < 0 are
active (sums equal a, b), the others are slack with F = 0 (G = 0). With the active sets fixed, the
stationarity conditions are smooth equations in (F, G, H); differentiating them gives one linear
system per batch item of size (M + 1) after eliminating the diagonal F block. Backward memory is the
plan itself plus two masks, whatever the number of iterations.

Shape legend: B batch of independent problems, N rows (sources), M columns (targets).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from med3dinsight.losses.ot_solver import SCHEDULES, solve_potentials


def partial_ot_plan(
    cost: Tensor,
    mass: float | Tensor,
    eps: float | Tensor,
    a: Tensor | None = None,
    b: Tensor | None = None,
    max_iter: int = 1000,
    tol: float = 1e-5,
    check_every: int = 10,
    log: bool = False,
    schedule: str = "joint",
) -> Tensor:
    """Entropic partial OT plan, batched, differentiable with respect to `cost`.

    Args:
        cost: cost matrix, shape (B, N, M) or (N, M); any scale (it is divided by `eps`).
        mass: total mass to transport, in (0, min(sum a, sum b)].
        eps: entropic regularisation (> 0), in the units of `cost` (POT's `reg`).
        a: row marginal upper bounds, shape (N,) or (B, N), nonnegative; default uniform 1/N.
        b: column marginal upper bounds, shape (M,) or (B, M), nonnegative; default uniform 1/M.
        max_iter: hard cap on iterations (one iteration = row, column and mass updates, like POT's).
        tol: stop once the marginal violation (L1 change of the row sums made by the row update plus
            that of the column sums by the column update), relative to `mass`, is below `tol` for every
            batch item. float32 plans are resolved to a few 1e-6, hence the default 1e-5; 0 runs exactly
            `max_iter` iterations.
        check_every: iterations between convergence checks (each costs a device-to-host sync).
        log: return log(plan), computed from the potentials: finite where the plan underflows to 0.
        schedule: "joint" (fast) or "pot" (POT's iterates); both converge to the same plan.

    Returns:
        The plan (or its log), same shape and dtype as `cost`. Gradients flow to `cost` by implicit
        differentiation of the optimality conditions; `a`, `b`, `mass` and `eps` are treated as constants.

    Raises:
        ValueError: on a cost that is not 2-D or 3-D, marginals whose shapes do not match the cost or
            that are negative, `eps <= 0`, `mass` outside (0, min(sum a, sum b)], or bad iteration
            settings.
    """
    mass, eps = _scalar(mass), _scalar(eps)
    if cost.dim() not in (2, 3):
        raise ValueError(f"cost must have shape (N, M) or (B, N, M), got {tuple(cost.shape)}")
    if not cost.is_floating_point():
        raise ValueError(f"cost must be a floating-point tensor, got {cost.dtype}")
    single = cost.dim() == 2
    cost_BNM = cost.unsqueeze(0) if single else cost
    num_batch, n, m = cost_BNM.shape
    if n == 0 or m == 0:
        raise ValueError(f"cost must be non-empty, got shape {tuple(cost.shape)}")
    a_BN = _marginal("a", a, num_batch, n, single, cost_BNM)
    b_BM = _marginal("b", b, num_batch, m, single, cost_BNM)
    if not (isinstance(eps, int | float) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if max_iter < 1 or check_every < 1 or tol < 0:
        raise ValueError(
            f"need max_iter >= 1, check_every >= 1, tol >= 0; got {max_iter}, {check_every}, {tol}"
        )
    limit = torch.minimum(a_BN.sum(1), b_BM.sum(1)).min().item()
    # float sums of uniform marginals land a few ulps either side of 1: accept mass == limit.
    if not (isinstance(mass, int | float) and 0 < mass <= limit * (1 + 1e-6)):
        raise ValueError(f"mass must be in (0, min(sum a, sum b)] = (0, {limit:.6g}], got {mass!r}")
    mass = min(float(mass), limit)
    solver = dict(max_iter=max_iter, tol=tol, check_every=check_every, schedule=schedule)
    out_BNM = _PartialOT.apply(cost_BNM, a_BN, b_BM, mass, float(eps), solver, log)
    return out_BNM[0] if single else out_BNM


class _PartialOT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cost_BNM, a_BN, b_BM, mass, eps, solver, log):  # type: ignore[override]
        cost_BNM = cost_BNM.detach()
        f_BN, g_BM, h_B, _ = solve_potentials(cost_BNM, a_BN, b_BM, mass, eps, **solver)
        logp_BNM = f_BN[:, :, None] + g_BM[:, None, :] + h_B[:, None, None] - cost_BNM / eps
        plan_BNM = torch.exp(logp_BNM)
        ctx.save_for_backward(plan_BNM, f_BN < 0, g_BM < 0)
        ctx.eps, ctx.log = eps, log
        return logp_BNM if log else plan_BNM

    @staticmethod
    def backward(ctx, grad_BNM):  # type: ignore[override]
        plan_BNM, active_BN, active_BM = ctx.saved_tensors
        # d log P = dP / P, so P * (grad wrt P) is the incoming gradient itself in log mode.
        pg_BNM = grad_BNM if ctx.log else plan_BNM * grad_BNM
        grad_cost = implicit_cost_grad(plan_BNM, active_BN, active_BM, pg_BNM) / ctx.eps
        return grad_cost, None, None, None, None, None, None


def implicit_cost_grad(plan_BNM: Tensor, active_BN: Tensor, active_BM: Tensor, pg_BNM: Tensor) -> Tensor:
    """Vector-Jacobian product d<grad, P>/dC for P = exp(F + G + H - C) at the partial-OT fixed point.

    With E the map (wF, wG, wH) -> wF_i + wG_j + wH restricted to active rows/columns, the result is
    P * (E w - grad) where (E^T diag(P) E) w = E^T (P * grad). The F block is diagonal and is eliminated;
    the remaining (M + 1) x (M + 1) system is solved in float64. When every row (or column) is active
    the mass equation is implied and wH is fixed to 0; when both are, one column is fixed as well
    (the balanced-OT gauge).

    Args:
        plan_BNM: the plan, (B, N, M).
        active_BN: rows whose upper bound is tight (F < 0), bool (B, N).
        active_BM: columns whose upper bound is tight (G < 0), bool (B, M).
        pg_BNM: plan * (incoming gradient with respect to the plan), (B, N, M).

    Returns:
        Gradient with respect to C = cost / eps, (B, N, M), dtype of the plan.
    """
    p = plan_BNM.double()
    pg = pg_BNM.double()
    mA = active_BN.double()
    all_rows, all_cols = active_BN.all(1), active_BM.all(1)
    mB = active_BM.clone()
    mB[:, -1] &= ~(all_rows & all_cols)
    mB = mB.double()
    mH = (~(all_rows | all_cols)).double()
    num_batch, n, m = p.shape
    r_BN, c_BM, tot_B = p.sum(2), p.sum(1), p.sum((1, 2))
    # Q: coupling of each row equation to (wG_1..wG_M, wH).
    q_BNK = torch.cat([p * mB[:, None, :], (r_BN * mH[:, None])[:, :, None]], dim=2)
    d_BN = mA / r_BN.clamp_min(torch.finfo(torch.float64).tiny)
    y_BKK = torch.zeros(num_batch, m + 1, m + 1, dtype=torch.float64, device=p.device)
    y_BKK[:, :m, :m] = torch.diag_embed(c_BM * mB)
    y_BKK[:, :m, m] = c_BM * mB * mH[:, None]
    y_BKK[:, m, :m] = y_BKK[:, :m, m]
    y_BKK[:, m, m] = tot_B * mH
    s_BKK = y_BKK - q_BNK.transpose(1, 2) @ (d_BN[:, :, None] * q_BNK)
    # At small eps the plan's support splits into blocks (entries underflow to 0) and every fully
    # active block adds a gauge direction: S is singular, but such directions change P * (E w) by ~0,
    # so a tiny ridge that pins them costs no accuracy.
    ridge_B = 1e-12 * s_BKK.diagonal(dim1=1, dim2=2).abs().mean(1).clamp_min(1e-300)
    fixed_BK = torch.cat([1 - mB, 1 - mH[:, None]], dim=1)
    s_BKK = s_BKK + torch.diag_embed(fixed_BK + ridge_B[:, None])
    rhs_f = pg.sum(2) * mA
    rhs_BK = torch.cat([pg.sum(1) * mB, (pg.sum((1, 2)) * mH)[:, None]], dim=1)
    rhs_BK = rhs_BK - (q_BNK.transpose(1, 2) @ (d_BN * rhs_f)[:, :, None])[:, :, 0]
    sol_BK = torch.linalg.solve(s_BKK, rhs_BK)
    w_f = d_BN * (rhs_f - (q_BNK @ sol_BK[:, :, None])[:, :, 0])
    ew = w_f[:, :, None] + (sol_BK[:, :m] * mB)[:, None, :] + (sol_BK[:, m] * mH)[:, None, None]
    return (p * ew - pg).to(plan_BNM.dtype)


def _scalar(x: float | Tensor) -> float:
    """A Python number from a number or a one-element tensor (POT's log variant wants tensors)."""
    return x.item() if isinstance(x, Tensor) and x.numel() == 1 else x  # type: ignore[return-value]


def _marginal(name: str, w: Tensor | None, num_batch: int, size: int, single: bool, like: Tensor) -> Tensor:
    """A marginal as (B, size) in the cost's dtype/device; uniform when None."""
    if w is None:
        return torch.full((num_batch, size), 1.0 / size, dtype=like.dtype, device=like.device)
    ok_shapes = [(size,)] if single else [(size,), (num_batch, size)]
    if tuple(w.shape) not in ok_shapes:
        shapes = " or ".join(map(str, ok_shapes))
        raise ValueError(f"{name} must have shape {shapes} to match cost, got {tuple(w.shape)}")
    w = w.detach().to(dtype=like.dtype, device=like.device)
    if bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
        raise ValueError(f"{name} must be finite and nonnegative")
    return w.expand(num_batch, size).contiguous()
