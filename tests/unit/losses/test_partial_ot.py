"""partial_ot_plan against POT's entropic_partial_wasserstein: plans, constraints, gradients, errors."""

import pytest
import torch

from med3dinsight.losses.partial_ot import partial_ot_plan

ot = pytest.importorskip("ot")


def _problem(n: int, m: int, seed: int = 0, dtype=torch.float64, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    cost = torch.rand(n, m, generator=g, dtype=dtype) * scale
    return cost, torch.full((n,), 1.0 / n, dtype=dtype), torch.full((m,), 1.0 / m, dtype=dtype)


def _rel_l1(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x - ref).abs().sum() / ref.abs().sum()).item()


# (N, M, mass, eps): square and rectangular, slack and tight mass, authors' settings in the middle
CASES = [
    (5, 7, 0.5, 0.1),
    (8, 8, 0.95, 0.05),
    (16, 16, 0.95, 0.03),
    (32, 20, 0.8, 0.05),
    (20, 32, 0.3, 0.02),
    (64, 64, 0.95, 0.03),
    (10, 10, 1.0, 0.1),
]


@pytest.mark.parametrize("n,m,mass,eps", CASES)
def test_plan_matches_pot(n, m, mass, eps):
    cost, a, b = _problem(n, m)
    ref = ot.partial.entropic_partial_wasserstein(a, b, cost, reg=eps, m=mass, numItermax=3000)
    for schedule in ("joint", "pot"):
        converged = partial_ot_plan(cost, mass, eps, tol=1e-12, max_iter=20000, schedule=schedule)
        assert _rel_l1(converged, ref) <= 1e-5
    # the same iterations as POT's default 1000 give the same plan, converged or not
    same_iters = partial_ot_plan(cost, mass, eps, tol=0.0, max_iter=1000, schedule="pot")
    pot_default = ot.partial.entropic_partial_wasserstein(a, b, cost, reg=eps, m=mass)
    assert _rel_l1(same_iters, pot_default) <= 1e-10


@pytest.mark.parametrize("n,m,mass,eps", CASES)
def test_marginal_constraints(n, m, mass, eps):
    cost, a, b = _problem(n, m, seed=1)
    plan = partial_ot_plan(cost, mass, eps, tol=1e-10, max_iter=20000)
    assert (plan.sum(1) <= a + 1e-8).all() and (plan.sum(0) <= b + 1e-8).all()
    assert plan.sum().item() == pytest.approx(mass, abs=1e-9)


def test_batched_equals_one_by_one_and_custom_marginals():
    g = torch.Generator().manual_seed(2)
    cost = torch.rand(3, 6, 9, generator=g, dtype=torch.float64)
    a = torch.rand(3, 6, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(9, generator=g, dtype=torch.float64) + 0.1
    plans = partial_ot_plan(cost, 0.7, 0.05, a=a, b=b, tol=1e-12, max_iter=20000)
    for k in range(3):
        ref = ot.partial.entropic_partial_wasserstein(a[k], b, cost[k], reg=0.05, m=0.7, numItermax=20000)
        assert _rel_l1(plans[k], ref) <= 1e-5


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e3])
def test_float32_small_eps_unnormalised_cost_is_finite(scale):
    cost, _, _ = _problem(32, 32, seed=3, dtype=torch.float32, scale=scale)
    cost.requires_grad_(True)
    plan = partial_ot_plan(cost, 0.95, 0.01)
    assert torch.isfinite(plan).all()
    assert plan.sum().item() == pytest.approx(0.95, rel=1e-4)
    log_plan = partial_ot_plan(cost, 0.95, 0.01, log=True)
    assert torch.isfinite(log_plan).all()  # finite even where exp underflows
    (-log_plan.diagonal().mean()).backward()
    assert torch.isfinite(cost.grad).all()


def test_tensor_scalars_accepted():
    cost, _, _ = _problem(4, 4)
    assert torch.equal(
        partial_ot_plan(cost, torch.tensor(0.9, dtype=torch.float64), torch.tensor(0.1, dtype=torch.float64)),
        partial_ot_plan(cost, 0.9, 0.1),
    )


@pytest.mark.parametrize("n,m,mass", [(4, 5, 0.6), (5, 5, 1.0), (4, 6, 0.25)])
def test_gradcheck(n, m, mass):
    cost, _, _ = _problem(n, m, seed=4)
    cost.requires_grad_(True)
    weights = torch.rand(n, m, dtype=torch.float64, generator=torch.Generator().manual_seed(5))

    def fn(c):
        return (partial_ot_plan(c, mass, 0.1, tol=1e-14, max_iter=100000, check_every=1) * weights).sum()

    assert torch.autograd.gradcheck(fn, (cost,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradient_matches_pot_autograd():
    cost, a, b = _problem(12, 12, seed=6)
    ours = cost.clone().requires_grad_(True)
    ref = cost.clone().requires_grad_(True)
    (-partial_ot_plan(ours, 0.95, 0.05, tol=1e-13, max_iter=20000).diagonal().log().mean()).backward()
    plan = ot.partial.entropic_partial_wasserstein(a, b, ref, reg=0.05, m=0.95, numItermax=3000)
    (-plan.diagonal().log().mean()).backward()
    assert _rel_l1(ours.grad, ref.grad) <= 1e-5


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(cost=torch.rand(4)), "shape"),
        (dict(cost=torch.rand(2, 3, 4, 5)), "shape"),
        (dict(a=torch.full((5,), 0.2)), "a must have shape"),
        (dict(b=torch.full((3,), 0.25)), "b must have shape"),
        (dict(a=torch.tensor([0.5, 0.5, -0.25, 0.25])), "nonnegative"),
        (dict(mass=0.0), "mass must be in"),
        (dict(mass=1.5), "mass must be in"),
        (dict(mass=0.6, a=torch.full((4,), 0.125)), "mass must be in"),
        (dict(eps=0.0), "eps must be"),
        (dict(eps=-0.1), "eps must be"),
        (dict(max_iter=0), "max_iter"),
        (dict(schedule="sinkhorn"), "schedule"),
    ],
)
def test_value_errors(kwargs, match):
    args = dict(cost=torch.rand(4, 4), mass=0.9, eps=0.05) | kwargs
    with pytest.raises(ValueError, match=match):
        partial_ot_plan(**args)
