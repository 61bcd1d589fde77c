"""A missing optional package gives one line naming ``pip install 'dla-plugins[extra]'``, never a traceback from an
entry point. Hosts are hidden with ``sys.modules[name] = None`` in a child process (the real host stays installed)."""
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import subprocess_env

ADAPTERS = [('d2_ext', 'detectron2', 'detectron2', 'train_net'), ('mmseg_ext', 'mmcv', 'mmseg', 'train'),
            ('timm_ext', 'timm', 'timm', 'train')]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True, text=True,
                          env=subprocess_env(), timeout=300)


@pytest.mark.parametrize('adapter,host,extra,entry', ADAPTERS)
def test_entry_point_without_host_exits_with_one_line(adapter, host, extra, entry):
    proc = _python(f"""
        import runpy, sys
        sys.modules[{host!r}] = None
        sys.argv = ['-m']  # what Python sets while it locates `python -m {adapter}.{entry}`
        runpy.run_module('{adapter}.{entry}', run_name='__main__', alter_sys=True)
    """)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'error: {adapter} needs {host}, which is not installed: '
                                                   f"pip install 'dla-plugins[{extra}]'"), proc.stderr


@pytest.mark.parametrize('adapter,host,extra', [a[:3] for a in ADAPTERS if a[0] != 'timm_ext'])
def test_adapter_without_host_still_locates_configs_and_names_the_extra(adapter, host, extra):
    proc = _python(f"""
        import os, sys
        sys.modules[{host!r}] = None
        import {adapter}
        names = {adapter}.list_config_files()
        assert names and all(os.path.isfile({adapter}.get_config_file(n)) for n in names), names
        try:
            {adapter}.DLAUpNeck if {adapter!r} == 'd2_ext' else {adapter}.DLAUpHead
        except ImportError as e:
            print(type(e).__name__ + ': ' + str(e))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"MissingExtraError: {adapter} needs {host}, which is not installed: "
                                  f"pip install 'dla-plugins[{extra}]'")


@pytest.mark.parametrize('argv,module,extra', [
    (['export', 'dla46_c', '--onnx', 'x.onnx'], 'onnxruntime', 'export'),
])
def test_cli_verb_without_extra_prints_one_line(argv, module, extra):
    proc = _python(f"""
        import sys
        sys.modules[{module!r}] = None
        from dla_plugins.tools.cli import main
        sys.exit(main({argv!r}))
    """)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip() == (f'dla-plugins {argv[0]}: error: dla-plugins {argv[0]}'
                                   f"{' --onnx' if argv[0] == 'export' else ''} needs {module}, which is not "
                                   f"installed: pip install 'dla-plugins[{extra}]'")


def test_unknown_config_name_lists_the_shipped_ones():
    import d2_ext
    import mmseg_ext

    with pytest.raises(FileNotFoundError, match=r"name: no detectron2 config 'nope.yaml' ships with dla-plugins; "
                                                r'available: .*Base-DLA.yaml'):
        d2_ext.get_config_file('nope.yaml')
    with pytest.raises(FileNotFoundError, match=r"name: no mmseg config 'nope.py' .*_base_/models/dla34_idaup.py"):
        mmseg_ext.get_config_file('nope.py')


def test_dcn_auto_never_picks_a_missing_torchvision():
    """Without torchvision, 'auto' takes the native kernel on CUDA fp32 too; 'torchvision' names the extra."""
    proc = _python("""
        import sys
        sys.modules['torchvision'] = None
        import torch
        from dla_plugins.dcn import deform_conv2d, resolve_dcn_impl
        print(resolve_dcn_impl('auto', torch.device('cuda'), torch.float32))
        x, off, w = torch.randn(1, 2, 4, 4), torch.zeros(1, 18, 4, 4), torch.randn(2, 2, 3, 3)
        try:
            deform_conv2d(x, off, w, padding=1, impl='torchvision')
        except ImportError as e:
            print(type(e).__name__ + ': ' + str(e))
        print(float((deform_conv2d(x, off, w, padding=1) - torch.nn.functional.conv2d(x, w, padding=1)).abs().max()))
    """)
    assert proc.returncode == 0, proc.stderr
    auto, err, diff = proc.stdout.strip().splitlines()
    assert auto == 'native'
    assert err == ("MissingExtraError: impl='torchvision' needs torchvision, which is not installed: "
                   "pip install 'dla-plugins[torchvision]'")
    assert float(diff) < 1e-5  # zero offsets: the native kernel is a plain conv
