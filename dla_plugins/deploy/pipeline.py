"""One deployment step, as ``dla-plugins export --onnx`` runs it: export for a runtime at a precision, then check
the file where it will run (fp32: equal to eager within a tolerance; fp16/int8: agreement on a held-out batch) and
optionally time it against eager PyTorch.

Precision per runtime (docs/deploy.md): 'fp16' writes an fp16 graph (fp32 inputs/outputs; OpenVINO then computes
in the CPU's half type); 'int8' calibrates static QDQ quantization on the onnxruntime-runnable form and converts
the result to the runtime's form. A 'tensorrt' file is checked in onnxruntime (same graph; TensorRT needs a GPU).
"""
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from .export import _as_tuple, _deform_modules, check_onnx, check_runtimes, deform_form, export_onnx, openvino_form
from .quantize import agreement, calibration_images, quantize_int8, to_fp16
from .runtimes import load_onnx

__all__ = ['PRECISIONS', 'DeployReport', 'deploy_onnx', 'time_onnx']

PRECISIONS = ('fp32', 'fp16', 'int8')
HELD_OUT = 8


@dataclass
class DeployReport:
    """What :func:`deploy_onnx` wrote and measured: ``max_abs`` (fp32 check) or ``agreement`` per runtime run."""

    path: str
    runtime: str
    form: str
    precision: str
    max_abs: Optional[float] = None
    agreement: Dict[str, Dict[str, float]] = field(default_factory=dict)

    def summary(self) -> str:
        """One line per fact, as the command prints them."""
        form = '' if self.form == '-' else f', deformable nodes as {self.form!r}'
        head = f'wrote {self.path} ({self.precision}{form}, for {self.runtime})'
        if self.max_abs is not None:
            where = check_runtimes(self.runtime)
            return (f'{head}; {" and ".join(where)} {"matches" if len(where) == 1 else "match"} eager '
                    f'(max abs diff {self.max_abs:.2e})')
        agree = '; '.join(f'{rt}: ' + ', '.join(f'{k} {v:.4g}' for k, v in a.items())
                          for rt, a in self.agreement.items())
        return f'{head}; agreement with fp32 eager on {HELD_OUT} held-out images: {agree}'


def _split(calibration: Optional[str], size: int, img_size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """(calibration set, held-out batch): the synthetic set (held out: another seed) or a folder's images."""
    if calibration is None:
        return (calibration_images(None, size, img_size),
                calibration_images(None, HELD_OUT, img_size, seed=1))
    images = calibration_images(calibration, size + HELD_OUT, img_size)
    if len(images) <= size:
        raise ValueError(f'calibration: {len(images)} images in {calibration!r}; allowed: more than '
                         f'calibration_size={size} (the rest, up to {HELD_OUT}, are the held-out batch)')
    return images[:size], images[size:]


def deploy_onnx(model: nn.Module, path: Union[str, os.PathLike], runtime: str = 'onnxruntime',
                precision: str = 'fp32', img_size: Tuple[int, int] = (224, 224), task: str = 'classifier',
                calibration: Optional[str] = None, calibration_size: int = 32,
                deform: Optional[str] = None) -> DeployReport:
    """Export ``model`` for ``runtime`` at ``precision`` to ``path`` and check it (module doc).

    ``task`` names the agreement measure (:func:`~dla_plugins.deploy.quantize.agreement`); ``calibration`` is an
    image folder (None: the synthetic set) of which ``calibration_size`` images calibrate int8 and the next ones
    are the held-out batch.

    Raises:
        ValueError: unknown runtime, precision or deformable form.
        ExportError: the export fails or (fp32) does not match eager.
    """
    if precision not in PRECISIONS:
        raise ValueError(f'precision: unknown precision {precision!r}; allowed: {list(PRECISIONS)}')
    form = deform_form(runtime, deform)
    shown = form if _deform_modules(model) else '-'  # the form only matters with deformable nodes
    path = os.fspath(path)
    if precision == 'fp32':
        export_onnx(model, path, img_size, runtime=runtime, deform=form)
        return DeployReport(path, runtime, shown, precision, max_abs=check_onnx(model, path, img_size, runtime=runtime))
    calib, held = _split(calibration, calibration_size, img_size)
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, 'fp32.onnx')  # a form onnxruntime runs (calibration), checked first
        export_onnx(model, base, img_size, deform='plain' if form == 'plain' else 'op')
        check_onnx(model, base, img_size)
        if precision == 'fp16':
            to_fp16(base, path)
        else:
            quantize_int8(base, path, calib, symmetric=runtime == 'tensorrt')
    if form == 'openvino':
        openvino_form(path, path)
    with torch.no_grad():
        ref = [o.numpy() for o in _as_tuple(model.eval()(torch.from_numpy(held)))]
    report = DeployReport(path, runtime, shown, precision)
    for rt in check_runtimes(runtime):
        got = load_onnx(path, rt, half=precision == 'fp16')(held)
        report.agreement[rt] = agreement(ref, got, task)
    return report


def time_onnx(model: nn.Module, path: Union[str, os.PathLike], runtime: str, half: bool = False,
              img_size: Tuple[int, int] = (224, 224), batch: int = 1, rounds: int = 10) -> Dict[str, float]:
    """Median latency (ms) of eager ``model`` and of ``path`` in ``runtime``, timed alternately (one call each per
    round, after one warm-up call), and their ratio ``speedup`` (eager / runtime, median of per-round ratios)."""
    x = torch.randn(batch, 3, *img_size)
    run = load_onnx(path, runtime, half=half)
    xs = x.numpy()
    eager, onnx = [], []
    with torch.no_grad():
        for i in range(rounds + 1):
            t0 = time.perf_counter()
            model(x)
            t1 = time.perf_counter()
            run(xs)
            t2 = time.perf_counter()
            if i:
                eager.append(t1 - t0)
                onnx.append(t2 - t1)
    return dict(eager_ms=1e3 * statistics.median(eager), runtime_ms=1e3 * statistics.median(onnx),
                speedup=statistics.median(e / o for e, o in zip(eager, onnx)))
