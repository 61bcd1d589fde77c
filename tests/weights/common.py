"""Helpers of the weights tests: test entries, the cache they fill, child processes that fetch."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Sequence

import torch

import dla_plugins as dp
from dla_plugins.weights import Source, WeightEntry
from tests.helpers import ROOT, subprocess_env


def entry(name: str, *sources: Source, family: str = 'timm', variant: str = 'dla46_c', **kw) -> WeightEntry:
    return WeightEntry(name, variant, family, tuple(sources), 'create_dla', kw.pop('model_kwargs', {'num_classes': 10}),
                       **kw)


def home() -> Path:
    return Path(os.environ['DLA_PLUGINS_HOME'])


def leftovers(name: str) -> List[str]:
    """Partial downloads (and their validators) in ``name``'s cache folder."""
    return sorted(p.name for p in (home() / name).glob('.part-*'))


def parts(name: str) -> List[Path]:
    """The partial downloads of ``name`` (without their validators)."""
    return sorted(p for p in (home() / name).glob('.part-*') if not p.name.endswith('.validator'))


def assert_loads(path: str, state: dict) -> None:
    model = dp.create_dla('dla46_c', num_classes=10)
    dp.load_checkpoint(model, path)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def spec(e: WeightEntry) -> str:
    return json.dumps(dict(name=e.name, variant=e.variant, family=e.family, builds=e.builds,
                           model_kwargs=dict(e.model_kwargs), sources=[dataclasses.asdict(s) for s in e.sources]))


def child(e: WeightEntry, *args: str, env: Sequence = (), **popen) -> subprocess.Popen:
    """``python -m tests.weights.run_fetch`` on ``e`` (see there for ``args``), with ``env`` pairs added."""
    return subprocess.Popen([sys.executable, '-m', 'tests.weights.run_fetch', spec(e), *args], cwd=ROOT,
                            env=subprocess_env(**dict(env)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)
