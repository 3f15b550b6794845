"""Partial-OT alignment loss: our batched log-domain solver vs POT, as the authors used it.

    OMP_NUM_THREADS=1 .venv/bin/python bench/partial_ot.py [--sizes 16 64 256] [--repeats 3] [--device cuda]

Side by side in one run, per batch size B (plan B x B, mass 0.95, eps 0.03, cost scaled to max 1 from
synthetic 512-d embedding pairs): plan + loss (-mean log diag) forward and backward, in float32:
- POT: `ot.partial.entropic_partial_wasserstein(a, b, M, reg, m)` on torch tensors with autograd through
  its 1000 iterations (what the authors ran);
- ours: `partial_ot_plan(..., log=True)` with implicit-gradient backward.
Memory saved for backward = bytes of distinct tensor storages autograd keeps for backward, counted with
`torch.autograd.graph.saved_tensors_hooks`. A float64 run gives the plans' relative L1 difference.
The last line printed is one JSON object; targets: speedup_vs_pot_B256 >= 20,
backward_memory_ratio_B256 >= 10, plan_rel_l1_vs_pot <= 1e-5.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import ot  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from med3dinsight.losses.ot_solver import solve_potentials  # noqa: E402
from med3dinsight.losses.partial_ot import partial_ot_plan  # noqa: E402

MASS, EPS, DIM = 0.95, 0.03, 512


def make_cost(b: int, dtype: torch.dtype, device: str, noise: float, seed: int = 0) -> torch.Tensor:
    """(B, B) squared distance between L2-normalised noisy pairs, scaled to max 1 (the loss's cost).

    noise 0.05 per dimension: pairs clearly matched (late training, near-permutation plan);
    noise 1.0: barely matched (early training, diffuse plan)."""
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(b, DIM, generator=g, dtype=torch.float64), dim=1)
    y = F.normalize(x + noise * torch.randn(b, DIM, generator=g, dtype=torch.float64), dim=1)
    cost = torch.cdist(y, x).square()
    return (cost / cost.max()).to(dtype=dtype, device=device)


def pot_loss(cost: torch.Tensor) -> torch.Tensor:
    a = torch.full((cost.shape[0],), 1.0 / cost.shape[0], dtype=cost.dtype, device=cost.device)
    return -ot.partial.entropic_partial_wasserstein(a, a, cost, reg=EPS, m=MASS).diagonal().log().mean()


def our_loss(cost: torch.Tensor) -> torch.Tensor:
    return -partial_ot_plan(cost, MASS, EPS, log=True).diagonal().mean()


def timed(loss_fn: Callable[[torch.Tensor], torch.Tensor], cost: torch.Tensor, repeats: int) -> float:
    """Median seconds of loss forward + backward."""
    times = []
    for _ in range(repeats):
        leaf = cost.clone().requires_grad_(True)
        _sync(cost)
        start = time.perf_counter()
        loss_fn(leaf).backward()
        _sync(cost)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def saved_bytes(loss_fn: Callable[[torch.Tensor], torch.Tensor], cost: torch.Tensor) -> int:
    """Bytes of distinct storages autograd saves for backward (all alive at the end of forward)."""
    storages: dict[tuple[int, str], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        storages[(s.data_ptr(), str(t.device))] = s.nbytes()
        return t

    leaf = cost.clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(leaf)
    loss.backward()
    return sum(storages.values())


def _sync(t: torch.Tensor) -> None:
    if t.device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--noise", type=float, default=0.05, help="per-dimension noise between pairs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, float | int | str] = dict(device=args.device, mass=MASS, eps=EPS, noise=args.noise)
    rel_l1 = []
    for b in args.sizes:
        cost32 = make_cost(b, torch.float32, args.device, args.noise)
        timed(our_loss, cost32, 1)  # warm-up (first-call allocations, CUDA kernels)
        t_ours, t_pot = timed(our_loss, cost32, args.repeats), timed(pot_loss, cost32, args.repeats)
        mem_ours, mem_pot = saved_bytes(our_loss, cost32), saved_bytes(pot_loss, cost32)
        cost64 = make_cost(b, torch.float64, args.device, args.noise)
        ours = partial_ot_plan(cost64, MASS, EPS, tol=1e-10, max_iter=5000)
        a = torch.full((b,), 1.0 / b, dtype=torch.float64, device=args.device)
        ref = ot.partial.entropic_partial_wasserstein(a, a, cost64, reg=EPS, m=MASS)
        rel_l1.append(((ours - ref).abs().sum() / ref.abs().sum()).item())
        iters = solve_potentials(cost32[None], a[None].float(), a[None].float(), MASS, EPS, 1000, 1e-5)[3]
        row = {
            f"ours_s_B{b}": t_ours,
            f"pot_s_B{b}": t_pot,
            f"speedup_vs_pot_B{b}": t_pot / t_ours,
            f"saved_bytes_ours_B{b}": mem_ours,
            f"saved_bytes_pot_B{b}": mem_pot,
            f"backward_memory_ratio_B{b}": mem_pot / mem_ours,
            f"iterations_ours_B{b}": iters,
            f"plan_rel_l1_vs_pot_B{b}": rel_l1[-1],
        }
        print(json.dumps(row), flush=True)
        results.update(row)
    results["plan_rel_l1_vs_pot"] = max(rel_l1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
