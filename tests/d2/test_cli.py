"""The command-line entries ``python -m d2_ext.train_net`` and ``python -m d2_ext.run``: bad input is one line on
stderr naming the argument or file, exit status 2; the unexpected keeps its traceback, exit status 1; and
``--synthetic-shapes`` in two processes (gloo on the CPU) is written once, completely, before either process reads it.
"""
import importlib.util
import os
import re
import subprocess
import sys
from typing import List

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

import d2_ext
from d2_ext import run, train_net
from tests.helpers import ROOT, subprocess_env

# Faster R-CNN: detectron2's Base-RetinaNet.yaml holds a Python tag, and loading it logs a warning on stderr
CONFIG = d2_ext.get_config_file('faster_rcnn_dla34_fpn_1x.yaml')
TOOLS = os.path.dirname(importlib.util.find_spec('tools').origin)  # sal-detectron2's stock tools/
# 64 px inputs, dla46_c and a 32-channel FPN from scratch on the CPU
TINY = ['MODEL.WEIGHTS', '', 'MODEL.DEVICE', 'cpu', 'MODEL.DLAP.ARCH', 'dla46_c', 'MODEL.DLAP.NORM', 'BN',
        'MODEL.FPN.OUT_CHANNELS', '32', 'INPUT.MIN_SIZE_TEST', '64', 'INPUT.MAX_SIZE_TEST', '64',
        'DATALOADER.NUM_WORKERS', '0']


def _run(*args: str, cwd=ROOT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', *args], cwd=str(cwd), env=subprocess_env(OMP_NUM_THREADS='1', **env),
                          capture_output=True, text=True, timeout=300)


def _stderr(proc: subprocess.CompletedProcess) -> List[str]:
    """stderr without the hosts' warnings: Python's (torch deprecates ``torch.jit.script``, which fvcore calls when
    detectron2 is imported) and torch's logger's (``W1207 20:16:51.256000 15249 torch/utils/cpp_extension.py:183] No
    CUDA runtime is found``, when detectron2 collects its environment)."""
    err = re.sub(r'^\S+:\d+: \w*Warning: .*\n(  .*\n)?', '', proc.stderr, flags=re.M)
    return [line for line in err.splitlines() if not re.match(r'W\d{4} [\d:.]+ \d+ \S+:\d+\] ', line)]


def _error_line(proc: subprocess.CompletedProcess) -> str:
    """The one line a bad input prints, with status 2."""
    err = _stderr(proc)
    assert proc.returncode == 2 and len(err) == 1, (proc.returncode, proc.stderr[-3000:])
    return err[0]


# python -m d2_ext.train_net

def test_train_net_missing_config_file(tmp_path):
    assert _error_line(_run('d2_ext.train_net', '--config-file', 'nowhere.yaml', cwd=tmp_path)) == (
        "d2_ext.train_net: error: Config file 'nowhere.yaml' does not exist!")


def test_train_net_bad_value_fails_before_any_process_starts(tmp_path):
    """With ``--num-gpus 2`` the launching process builds the model once on the CPU: a bad ``MODEL.DLAP`` value is
    one line from it (two spawned processes would each print a traceback)."""
    proc = _run('d2_ext.train_net', '--config-file', CONFIG, '--num-gpus', '2', '--dist-url', 'auto', '--eval-only',
                *TINY, 'DATASETS.TEST', '()', 'MODEL.DLAP.NORM', 'LN', 'OUTPUT_DIR', str(tmp_path))
    assert _error_line(proc) == ("d2_ext.train_net: error: norm: unknown norm 'LN'; allowed: ['FrozenBN', 'BN', "
                                 "'SyncBN', 'naiveSyncBN', 'GN'] or a callable")
    assert os.listdir(tmp_path) == []  # no process got as far as its set-up


def _cli_error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        train_net.cli(['--config-file', CONFIG, *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.splitlines()) == 1, err
    return err.rstrip('\n')


@pytest.mark.parametrize('argv,message', [
    (['--num-gpus', 'two'], "argument --num-gpus: invalid int value: 'two'"),
    (['MODEL.DLAP.NROM', 'BN'], 'Non-existent key: MODEL.DLAP.NROM'),
    (['SOLVER.MAX_ITER'], "Override list has odd length: ['SOLVER.MAX_ITER']; it must be a list of pairs"),
    (['SOLVER.MAX_ITER', 'ten'], "Type mismatch (<class 'int'> vs. <class 'str'>) with values (90000 vs. ten) for "
                                 "config key: SOLVER.MAX_ITER"),
    (['--synthetic-shapes', '-1'], '--synthetic-shapes/--synthetic-size: need N >= 1 and PX >= 32, got -1, 128'),
    (['DATASETS.TRAIN', '()', 'DATASETS.TEST', "('dlap_nowhere',)"],
     "DATASETS.TEST: dataset 'dlap_nowhere' is not registered; registered: "),
])
def test_train_net_bad_command_line(capsys, argv, message):
    assert _cli_error(capsys, *argv).startswith(f'd2_ext.train_net: error: {message}')


def test_train_net_missing_dataset_folder(capsys, tmp_path):
    register_coco_instances('dlap_cli_missing', {}, str(tmp_path / 'ann.json'), str(tmp_path / 'images'))
    try:
        assert _cli_error(capsys, 'DATASETS.TRAIN', "('dlap_cli_missing',)", 'DATASETS.TEST', '()') == (
            f"d2_ext.train_net: error: DATASETS.TRAIN: dataset 'dlap_cli_missing': json_file "
            f"{str(tmp_path / 'ann.json')!r} does not exist (detectron2 finds its builtin datasets under "
            f"$DETECTRON2_DATASETS, now {os.environ.get('DETECTRON2_DATASETS', 'datasets')!r})")
        # --eval-only reads DATASETS.TEST only
        assert _cli_error(capsys, '--eval-only', 'DATASETS.TRAIN', "('dlap_cli_missing',)", 'DATASETS.TEST',
                          "('dlap_nowhere',)").startswith('d2_ext.train_net: error: DATASETS.TEST:')
    finally:
        DatasetCatalog.remove('dlap_cli_missing')
        MetadataCatalog.remove('dlap_cli_missing')


@pytest.mark.slow
@pytest.mark.ddp
def test_train_net_synthetic_shapes_in_two_processes(tmp_path):
    """A fresh ``OUTPUT_DIR``: one process writes the shapes, both read them after a barrier and evaluate half of the
    test images each (before the fix the second process looked for them at once: FileNotFoundError)."""
    out = tmp_path / 'out'
    proc = _run('d2_ext.train_net', '--config-file', CONFIG, '--synthetic-shapes', '8', '--synthetic-size', '64',
                '--num-gpus', '2', '--dist-url', 'auto', '--eval-only', *TINY,
                'MODEL.ROI_HEADS.SCORE_THRESH_TEST', '0.0', 'OUTPUT_DIR', str(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert 'World size: 2' in proc.stdout and 'copypaste: Task: bbox' in proc.stdout
    for log in ('log.txt', 'log.txt.rank1'):  # each process evaluated 2 of the 4 test images
        assert 'Start inference on 2 batches' in (out / log).read_text(), log
    shapes = out / 'shapes'
    assert sorted(p.name for p in shapes.rglob('*')) == sorted(
        ['dlap_shapes_train', 'dlap_shapes_val', 'images', 'images', 'instances.json', 'instances.json']
        + [f'{i:05d}.png' for i in range(8)] + [f'{i:05d}.png' for i in range(4)])  # no temporary file left


# python -m d2_ext.run

def test_run_stock_tool_missing_dataset_folder(tmp_path):
    """detectron2's own train_net.py, COCO expected under an empty ``$DETECTRON2_DATASETS``: detectron2's error names
    the file, in one line."""
    proc = _run('d2_ext.run', os.path.join(TOOLS, 'train_net.py'), '--config-file', CONFIG, *TINY,
                'OUTPUT_DIR', str(tmp_path / 'out'), cwd=tmp_path, DETECTRON2_DATASETS=str(tmp_path))
    assert _error_line(proc) == ("d2_ext.run: error: [Errno 2] No such file or directory: "
                                 f"'{tmp_path / 'coco' / 'annotations' / 'instances_train2017.json'}'")


def test_run_stock_tool_missing_config_file(tmp_path):
    """detectron2 raises it as an ``assert`` inside ``merge_from_file``: bad input all the same."""
    proc = _run('d2_ext.run', os.path.join(TOOLS, 'analyze_model.py'), '--tasks', 'parameter', '--config-file',
                'nowhere.yaml', cwd=tmp_path)
    assert _error_line(proc) == "d2_ext.run: error: Config file 'nowhere.yaml' does not exist!"


def test_run_unexpected_error_keeps_its_traceback(tmp_path):
    (tmp_path / 'broken.py').write_text("raise RuntimeError('not bad input')\n")
    proc = _run('d2_ext.run', 'broken.py', cwd=tmp_path)
    err = _stderr(proc)
    assert proc.returncode == 1 and err[0] == 'Traceback (most recent call last):', proc.stderr
    assert err[-2:] == ['RuntimeError: not bad input', 'd2_ext.run: unexpected RuntimeError (traceback above)']


@pytest.mark.parametrize('argv,message', [
    ([], 'script: none given'),
    (['no_such_tool.py', '--config-file', CONFIG], "script: no such file 'no_such_tool.py'"),
])
def test_run_without_script(capsys, argv, message):
    """In this process: both fail before the runner changes anything (detectron2's defaults, sys.argv)."""
    with pytest.raises(SystemExit) as e:
        run.main(argv)
    assert e.value.code == 2 and capsys.readouterr().err == (
        f'd2_ext.run: error: {message} (usage: python -m d2_ext.run SCRIPT.py [SCRIPT ARGS...])\n')
