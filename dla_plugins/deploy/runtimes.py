"""Run an exported ONNX file in the runtime it was exported for: onnxruntime or OpenVINO (CPU).

:func:`load_onnx` returns a callable ``images (N, 3, H, W) float32 ndarray -> list of output ndarrays``, the one way
export checks, quantization checks and ``benchmarks/bench_deploy.py`` run a graph. OpenVINO compiles with
``INFERENCE_PRECISION_HINT`` 'f32' unless ``half`` (its CPU plugin otherwise computes in bf16 wherever the CPU has
bf16 instructions, which an fp32 check must not); with ``half`` it computes in the CPU's half type ('f16' where the
CPU has fp16 arithmetic, else 'bf16'). TensorRT is not run here (no GPU on the CPU machines; docs/deploy.md).
"""
import os
from typing import Callable, List, Optional, Union

import numpy as np

from .._extras import require

__all__ = ['RUN_RUNTIMES', 'load_onnx', 'openvino_half_type']

RUN_RUNTIMES = ('onnxruntime', 'openvino')

Runner = Callable[[np.ndarray], List[np.ndarray]]


def openvino_half_type() -> str:
    """OpenVINO's CPU half precision on this machine: 'f16' with fp16 arithmetic, else 'bf16' (else 'f32')."""
    ov = require('openvino', 'export', "runtime='openvino'")
    caps = ov.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')
    return 'f16' if 'FP16' in caps else 'bf16' if 'BF16' in caps else 'f32'


def load_onnx(path: Union[str, os.PathLike], runtime: str = 'onnxruntime', half: bool = False,
              threads: Optional[int] = None) -> Runner:
    """Load ``path`` into ``runtime`` ('onnxruntime' or 'openvino') on the CPU; returns ``run(images) -> outputs``.

    Args:
        half: OpenVINO only: compute in the CPU's half type (:func:`openvino_half_type`) instead of fp32.
        threads: Intra-op threads (None: the runtime's default, all cores).

    Raises:
        ValueError: unknown runtime.
    """
    if runtime not in RUN_RUNTIMES:
        raise ValueError(f'runtime: cannot run ONNX in {runtime!r} here; allowed: {list(RUN_RUNTIMES)}')
    path = os.fspath(path)
    if runtime == 'onnxruntime':
        ort = require('onnxruntime', 'export', "runtime='onnxruntime'")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])
        return lambda x: sess.run(None, {'images': np.ascontiguousarray(x, dtype=np.float32)})
    ov = require('openvino', 'export', "runtime='openvino'")
    config = {'INFERENCE_PRECISION_HINT': openvino_half_type() if half else 'f32'}
    if threads:
        config['INFERENCE_NUM_THREADS'] = threads
    compiled = ov.Core().compile_model(path, 'CPU', config)
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> List[np.ndarray]:
        res = request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return [np.array(res[o]) for o in compiled.outputs]

    return run
