"""Checkpoint safety: pickled code is refused (weights_only), every bad key is named, corrupt files fail clearly."""
import os
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dla_plugins import CheckpointError, create_dla, load_checkpoint, read_state_dict


class Payload:
    """A custom class: unpickling it would run code from this module."""

    def __reduce__(self):
        return (os.system, ('echo pwned > /dev/null',))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'payload': Payload()}, path)
    with pytest.raises(CheckpointError) as e:
        read_state_dict(path)
    assert str(e.value) == (f"checkpoint: cannot read {str(path)!r}: it contains pickled Python objects "
                            f"(posix.system), which could run code when loaded; only tensors, numbers, strings and "
                            f"containers are read")
    assert 'weights_only' not in str(e.value) and e.value.__cause__ is None and e.value.__suppress_context__


class TrainState:
    """A harmless custom class: still refused, since unpickling it means importing and running this module."""

    def __init__(self):
        self.epoch = 3


def test_custom_class_instance_is_refused(tmp_path):
    path = tmp_path / 'obj.pth'
    torch.save({'model': {'w': torch.zeros(1)}, 'train_state': TrainState()}, path)
    with pytest.raises(CheckpointError, match=r"cannot read .*: it contains pickled Python objects \(tests\.core\."
                                              r"test_checkpoint_property\.TrainState\), which could run"):
        read_state_dict(path)


@pytest.fixture(scope='module')
def good_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('ck') / 'dla46_c.pth'
    torch.save(create_dla('dla46_c').state_dict(), path)
    return path


@settings(deadline=None, max_examples=6, derandomize=True)
@given(frac=st.floats(0.0, 0.95))
def test_truncated_files(good_file, tmp_path_factory, frac):
    data = good_file.read_bytes()
    path = tmp_path_factory.mktemp('t') / 'cut.pth'
    path.write_bytes(data[: int(len(data) * frac)])
    expected = 'the file is empty' if frac * len(data) < 1 else 'the file is truncated or corrupt ('
    with pytest.raises(CheckpointError, match=rf"checkpoint: cannot read '.*cut\.pth': {re.escape(expected)}"):
        read_state_dict(path)


def test_corrupt_safetensors(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / 'm.safetensors'
    save_file({'w': torch.ones(100)}, path)
    path.write_bytes(b'\xff' * 8 + path.read_bytes()[8:])  # absurd header length
    with pytest.raises(CheckpointError, match=r"checkpoint: cannot read '.*m\.safetensors': the safetensors file is "
                                              r"truncated or corrupt \(Error while deserializing header"):
        read_state_dict(path)
    path.write_text('not safetensors')
    with pytest.raises(CheckpointError, match=r"m\.safetensors': not a safetensors file \(no JSON header after the "
                                              r"8-byte length\)$"):
        read_state_dict(path)
    with pytest.raises(CheckpointError, match="checkpoint: no such file '.*nope.pth'"):
        read_state_dict(tmp_path / 'nope.pth')


@settings(deadline=None, max_examples=8, derandomize=True)
@given(text=st.text(min_size=1, max_size=64).filter(lambda t: not t.startswith(('PK', '\x80', 'c'))))
def test_text_file_is_not_a_checkpoint(tmp_path_factory, text):
    """Any non-torch, non-safetensors content: 'not a checkpoint', never torch's pickle advice (issue 11). (Text
    starting with 'c' can be a protocol-0 pickle naming a global: that one is reported as pickled code.)"""
    path = tmp_path_factory.mktemp('txt') / 'notes.pth'
    path.write_text(text, encoding='utf-8')
    with pytest.raises(CheckpointError) as e:
        read_state_dict(path)
    head = path.read_bytes()[:8]
    assert str(e.value) == (f'checkpoint: cannot read {str(path)!r}: not a checkpoint (neither a torch file nor '
                            f'safetensors; it starts with {head!r})')


def test_plain_pickle_and_foreign_zip(tmp_path):
    import pickle
    import zipfile

    with open(tmp_path / 'p.pth', 'wb') as f:
        pickle.dump({'w': 1, 'obj': TrainState()}, f, protocol=4)
    with pytest.raises(CheckpointError, match=r"p\.pth': it is a pickle using instructions a tensors-only reader "
                                              r"refuses \(Unsupported operand 149\); re-save it"):
        read_state_dict(tmp_path / 'p.pth')
    with zipfile.ZipFile(tmp_path / 'z.pth', 'w') as z:
        z.writestr('readme.txt', 'hello')
    with pytest.raises(CheckpointError, match=r"z\.pth': a zip archive, but not a torch checkpoint \(no data\.pkl"):
        read_state_dict(tmp_path / 'z.pth')


def test_save_atomic_round_trip_and_keeps_no_temporaries(tmp_path):
    from safetensors.torch import load_file

    from dla_plugins.files import save_atomic

    state = {'w': torch.arange(6.0).reshape(2, 3)}
    for name in ('a.pth', 'a.safetensors'):
        save_atomic(state, tmp_path / name)
        save_atomic({'w': state['w'] + 1}, tmp_path / name)  # replaces
    assert torch.equal(read_state_dict(tmp_path / 'a.pth')['w'], state['w'] + 1)
    assert torch.equal(load_file(tmp_path / 'a.safetensors')['w'], state['w'] + 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.pth', 'a.safetensors']
    assert (tmp_path / 'a.pth').stat().st_mode & 0o777 == 0o666 & ~_umask()
    # a failed write removes its temporary and leaves the old file alone
    with pytest.raises(ValueError, match='Key `w` is invalid'):
        save_atomic({'w': Payload}, tmp_path / 'a.safetensors')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.pth', 'a.safetensors']
    assert torch.equal(load_file(tmp_path / 'a.safetensors')['w'], state['w'] + 1)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_not_a_state_dict(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / 'list.pth')
    with pytest.raises(CheckpointError, match='does not hold a state_dict of tensors'):
        read_state_dict(tmp_path / 'list.pth')


@settings(deadline=None, max_examples=5, derandomize=True)
@given(n_drop=st.integers(1, 4), n_extra=st.integers(0, 3), n_reshape=st.integers(0, 2), seed=st.integers(0, 1000))
def test_every_bad_key_is_named(n_drop, n_extra, n_reshape, seed):
    model = create_dla('dla46_c', num_classes=10)
    state = dict(model.state_dict())
    g = torch.Generator().manual_seed(seed)
    keys = sorted(k for k in state if k.endswith('.weight'))
    idx = torch.randperm(len(keys), generator=g).tolist()
    dropped = [keys[i] for i in idx[:n_drop]]
    reshaped = [keys[i] for i in idx[n_drop:n_drop + n_reshape]]
    extra = [f'extra.{i}.weight' for i in range(n_extra)]
    for k in dropped:
        del state[k]
    for k in reshaped:
        state[k] = torch.zeros(*state[k].shape, 2)
    for k in extra:
        state[k] = torch.zeros(1)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(model, state)
    msg = str(e.value)
    assert f'{n_drop} missing key(s)' in msg
    for k in dropped + extra + reshaped:
        assert f'    {k}' in msg
    if n_reshape:
        assert f'{n_reshape} mis-shaped key(s)' in msg
