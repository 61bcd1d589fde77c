"""``dla-plugins`` and ``python -m timm_ext.train`` on bad input: one accurate message each (docs/errors.md)."""
import pytest
import torch

from dla_plugins import create_dla
from dla_plugins.tools.cli import main


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('bad')
    good = tmp / 'dla46_c.pth'
    torch.save(create_dla('dla46_c').state_dict(), good)
    (tmp / 'notes.pth').write_text('hello world\n')
    (tmp / 'cut.pth').write_bytes(good.read_bytes()[:5000])
    (tmp / 'empty.pth').write_bytes(b'')
    torch.save({'model': create_dla('dla46_c').state_dict(), 'fn': print}, tmp / 'code.pth')
    return tmp


@pytest.mark.parametrize('name,why', [
    ('notes.pth', "not a checkpoint (neither a torch file nor safetensors; it starts with b'hello wo')"),
    ('cut.pth', 'the file is truncated or corrupt ([Errno 22] Invalid argument)'),
    ('empty.pth', 'the file is empty'),
    ('code.pth', 'it contains pickled Python objects (print), which could run code when loaded; only '
                 'tensors, numbers, strings and containers are read'),
])
def test_convert_unreadable_checkpoints(files, tmp_path, capsys, name, why):
    """Issue 11: each kind of unreadable file gets its own message; torch's weights_only=False advice never shows."""
    src = str(files / name)
    assert main(['convert', src, str(tmp_path / 'out.safetensors'), '--no-progress']) == 2
    err = capsys.readouterr().err
    assert err == f'dla-plugins convert: error: checkpoint: cannot read {src!r}: {why}\n'
    assert 'weights_only' not in err and not (tmp_path / 'out.safetensors').exists()


def test_convert_wrong_variant_and_destination(files, tmp_path, capsys):
    assert main(['convert', str(files / 'dla46_c.pth'), str(tmp_path / 'o.safetensors'), '--variant', 'dla34',
                 '--no-progress']) == 2
    err = capsys.readouterr().err
    assert err.startswith('dla-plugins convert: error: checkpoint does not match DLA (layout: timm):\n'
                          '  6 missing key(s):\n    level3.tree1.project.0.weight\n')
    assert '  72 unexpected key(s):\n' in err and '  156 mis-shaped key(s):\n' in err
    assert main(['convert', str(files / 'dla46_c.pth'), str(tmp_path / 'o.pth')]) == 2
    assert capsys.readouterr().err == ("dla-plugins convert: error: DST: must end with .safetensors for --to core, "
                                       f"got {str(tmp_path / 'o.pth')!r}\n")


def test_timm_train_missing_data_root(tmp_path):
    from timm_ext.train import build_parser, train

    with pytest.raises(FileNotFoundError) as e:
        train(build_parser().parse_args(['--data-dir', str(tmp_path / 'nowhere'), '--device', 'cpu']))
    assert str(e.value) == (f"data_dir: {str(tmp_path / 'nowhere')!r} has none of the split folders ['train']; "
                            f"expected an ImageFolder: <data_dir>/train/<class>/<image> and "
                            f"<data_dir>/val/<class>/<image>")
    with pytest.raises(ValueError, match=r'data_dir: required \(an ImageFolder root with train/ and val/\), or use '
                                         r'--make-synthetic'):
        train(build_parser().parse_args(['--device', 'cpu']))


def test_unexpected_error_shows_its_traceback(monkeypatch, capsys):
    """Bad input is one line (exit 2); anything else (a bug, out of memory) keeps its traceback (exit 1)."""
    import dla_plugins.tools.zoo as zoo

    def broken(*args, **kwargs):
        raise RuntimeError('out of memory in zoo_rows')

    monkeypatch.setattr(zoo, 'zoo_rows', broken)
    assert main(['zoo', '--no-gflops']) == 1
    err = capsys.readouterr().err
    assert err.startswith('Traceback (most recent call last):\n')
    assert 'in broken\n' in err and 'RuntimeError: out of memory in zoo_rows\n' in err
    assert err.endswith('dla-plugins zoo: unexpected RuntimeError (traceback above)\n')
