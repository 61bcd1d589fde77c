import atexit
import os
import shutil
import tempfile

import pytest
import torch

# One thread per pytest-xdist worker (``make test`` runs one worker per core), else up to two.
torch.set_num_threads(1 if os.environ.get('PYTEST_XDIST_WORKER') else max(1, min(2, os.cpu_count() or 1)))

# No test reaches the internet for weights: registry names ('dlap://...') resolve from an empty per-run cache only
# (a shipped config that names weights fails with the WeightsError unless a test serves them on loopback). Set here,
# so the subprocesses of host-tool tests inherit it; tests/weights/conftest.py re-enables downloads per test.
os.environ['DLA_PLUGINS_OFFLINE'] = '1'
os.environ['DLA_PLUGINS_HOME'] = _WEIGHTS_HOME = tempfile.mkdtemp(prefix='dlap-test-weights-')
atexit.register(shutil.rmtree, _WEIGHTS_HOME, ignore_errors=True)
os.environ.pop('DLA_PLUGINS_MIRROR', None)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI every host is installed: a skipped test is a failure there."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get('CI') and report.skipped and not hasattr(report, 'wasxfail'):
        report.outcome = 'failed'
        report.longrepr = f'skipped in CI (every host must be installed there): {report.longrepr}'


def pytest_sessionfinish(session, exitstatus):
    """A run that executed no test fails (pytest already exits 5; make it explicit for filtered runs too)."""
    if session.testscollected == 0 and exitstatus == 0:
        session.exitstatus = 5


# Files whose tests take a minute or more start first, so that with pytest-xdist they overlap the rest instead of
# running alone at the end (``make test``: two workers, one file per worker at a time).
_LONG_FIRST = ('tests/d2/test_centernet_train.py', 'tests/tools/test_wheel.py', 'tests/benchmarks/test_gpu_check.py',
               'tests/mmseg/test_boundary_train.py', 'tests/mmseg/test_runner.py', 'tests/timm/test_resume.py',
               'tests/timm/test_train.py')


def pytest_collection_modifyitems(session, config, items):
    """Collection order, with :data:`_LONG_FIRST` files moved to the front (the order among them kept)."""
    rank = {name: i for i, name in enumerate(_LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split('::', 1)[0], len(rank)))
