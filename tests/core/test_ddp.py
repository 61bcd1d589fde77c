"""DDP with find_unused_parameters=False: two CPU processes (gloo) train a step of the classifier and of DLASeg."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import dla_plugins as dp


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world)
    torch.manual_seed(0)  # same initial weights on both ranks
    torch.set_num_threads(1)
    for tag, model in (('cls', dp.create_dla('dla34', num_classes=4)),
                       ('seg', dp.DLASeg('dla46_c', num_classes=3, output_stride=16))):
        before = {k: v.detach().clone() for k, v in model.state_dict().items()}
        ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=False)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        g = torch.Generator().manual_seed(100 + rank)  # different data per rank
        for _ in range(2):
            x = torch.randn(2, 3, 48, 48, generator=g)
            loss = ddp(x).float().pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        params = {k: v.detach() for k, v in model.named_parameters()}
        torch.save({'params': params, 'changed': sum(not torch.equal(before[k], v) for k, v in params.items())},
                   os.path.join(out_dir, f'{tag}{rank}.pt'))
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_two_cpu_processes(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / 'init'), str(tmp_path)), nprocs=2, join=True)
    for tag in ('cls', 'seg'):
        r0 = torch.load(tmp_path / f'{tag}0.pt', weights_only=True)
        r1 = torch.load(tmp_path / f'{tag}1.pt', weights_only=True)
        assert r0['changed'] == len(r0['params'])  # every parameter was trained
        for k, v in r0['params'].items():
            torch.testing.assert_close(v, r1['params'][k], msg=k)  # gradients were all-reduced
