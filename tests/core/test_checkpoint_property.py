"""Checkpoint safety: pickled code is refused (weights_only), every bad key is named, corrupt files fail clearly."""
import os

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
    with pytest.raises(CheckpointError, match=r'contains pickled Python objects; only tensors are loaded, '
                                              r'weights_only=True'):
        read_state_dict(path)


class TrainState:
    """A harmless custom class: still refused, since unpickling it means importing and running this module."""

    def __init__(self):
        self.epoch = 3


def test_custom_class_instance_is_refused(tmp_path):
    path = tmp_path / 'obj.pth'
    torch.save({'model': {'w': torch.zeros(1)}, 'train_state': TrainState()}, path)
    with pytest.raises(CheckpointError, match=r"(?s)cannot read .*contains pickled Python objects.*TrainState"):
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
    with pytest.raises(CheckpointError, match=r"checkpoint: cannot read '.*cut\.pth'"):
        read_state_dict(path)


def test_corrupt_safetensors(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / 'm.safetensors'
    save_file({'w': torch.ones(100)}, path)
    path.write_bytes(b'\xff' * 8 + path.read_bytes()[8:])  # absurd header length
    with pytest.raises(CheckpointError, match=r"checkpoint: cannot read '.*m\.safetensors'"):
        read_state_dict(path)
    (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint at all')
    with pytest.raises(CheckpointError, match='cannot read'):
        read_state_dict(tmp_path / 'junk.pth')
    with pytest.raises(CheckpointError, match="checkpoint: no such file '.*nope.pth'"):
        read_state_dict(tmp_path / 'nope.pth')


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
