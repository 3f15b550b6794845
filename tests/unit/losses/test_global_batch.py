"""Global-batch alignment across 2 gloo workers equals the single-process loss on the whole batch."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from med3dinsight.config.model import LossConfig
from med3dinsight.losses import AlignmentLoss

B, E = 4, 8


def _data():
    g = torch.Generator().manual_seed(0)
    e3 = torch.randn(2 * B, E, generator=g)
    return e3, e3 + 0.5 * torch.randn(2 * B, E, generator=g), torch.randn(2 * B, E, generator=g)


def _worker(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        loss_fn = AlignmentLoss(LossConfig(global_batch=True, recon_weight=0.0), dim=E)
        e3, img, txt = (t[rank * B : (rank + 1) * B] for t in _data())
        e3.requires_grad_(True)
        x = torch.zeros(B, 1, 2, 2, 2)
        loss = loss_fn(e3, img, txt, x, x)["total"]
        loss.backward()
        for p in loss_fn.parameters():  # what DDP does: average parameter gradients
            dist.all_reduce(p.grad)
            p.grad /= 2
        out[rank] = (loss.item(), e3.grad.clone(), loss_fn.image_cost.log_w.grad.clone())
    finally:
        dist.destroy_process_group()


def test_global_batch_matches_single_process():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        out = manager.dict()
        # fork: no re-import of torch in the children (spawn costs ~4 s more here)
        mp.start_processes(_worker, args=(port, out), nprocs=2, join=True, start_method="fork")
        results = dict(out)
    torch.manual_seed(0)
    loss_fn = AlignmentLoss(LossConfig(recon_weight=0.0), dim=E)
    e3, img, txt = _data()
    e3.requires_grad_(True)
    x = torch.zeros(2 * B, 1, 2, 2, 2)
    loss = loss_fn(e3, img, txt, x, x)["total"]
    loss.backward()
    # DDP averages: the global loss is the mean of the workers' losses, its gradient the mean of theirs
    assert (results[0][0] + results[1][0]) / 2 == pytest.approx(loss.item(), rel=1e-5)
    grad_e3 = torch.cat([results[0][1], results[1][1]]) / 2
    assert torch.allclose(grad_e3, e3.grad, atol=1e-6, rtol=1e-4)
    assert torch.allclose(results[0][2], loss_fn.image_cost.log_w.grad, atol=1e-6, rtol=1e-4)
