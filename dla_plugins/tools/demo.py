"""A short, real training of a DLA classifier on synthetic shapes (pure torch): the core's part of ``make demo``."""
import time
from typing import Dict

import torch
import torch.nn.functional as F

from ..data.synthetic import SHAPE_CLASSES, render_shapes
from ..factory import create_dla

__all__ = ['train_shapes_classifier']


def _tensors(n: int, size: int, seed: int):
    samples = render_shapes(n, (size, size), seed=seed)
    x = torch.stack([s.image for s in samples]).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.25)
    y = torch.stack([s.labels[0] for s in samples])
    return x, y


def train_shapes_classifier(variant: str = 'dla46_c', epochs: int = 3, train_size: int = 384, val_size: int = 128,
                            image_size: int = 64, batch_size: int = 32, lr: float = 0.05, seed: int = 0,
                            progress: bool = True) -> Dict[str, float]:
    """Train ``variant`` from scratch to classify 4 shapes; returns final loss and validation accuracy."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    x_tr, y_tr = _tensors(train_size, image_size, seed)
    x_va, y_va = _tensors(val_size, image_size, seed + 1)
    model = create_dla(variant, num_classes=len(SHAPE_CLASSES))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4, nesterov=True)
    steps = epochs * ((train_size + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    start, first_loss, loss_avg = time.time(), None, 0.0
    bar = tqdm(total=steps, desc=f'{variant} on shapes', disable=not progress, unit='step')
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(train_size)
        for i in range(0, train_size, batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            first_loss = loss.item() if first_loss is None else first_loss
            loss_avg = 0.8 * loss_avg + 0.2 * loss.item() if loss_avg else loss.item()
            bar.set_postfix(loss=f'{loss_avg:.3f}')
            bar.update()
    bar.close()
    model.eval()
    with torch.no_grad():
        acc = (model(x_va).argmax(1) == y_va).float().mean().item()
    return dict(first_loss=first_loss, final_loss=loss_avg, val_accuracy=acc, seconds=time.time() - start,
                chance=1.0 / len(SHAPE_CLASSES))
