"""The registry table: every entry well-formed, sourced, buildable and documented; registration errors; the
``dla-plugins weights`` command on loopback."""
import re

import pytest
import torch

import dla_plugins as dp
from dla_plugins import weights
from dla_plugins.checkpoint.detect import FAMILIES
from dla_plugins.tools.cli import main
from dla_plugins.weights import Source, WeightEntry
from tests.helpers import ROOT
from tests.weights.server import LoopbackServer, sha256

PINNED = {  # name -> the published hash status of its first source (a regression check on the table)
    'dla34.in1k': 'pinned sha256', 'dla34.ucbdrive': 'pinned sha384', 'centernet/ctdet_coco_dlav0_1x': 'pinned sha384',
    'mmdet3d/smoke_dla34_kitti': 'pinned sha256 prefix (d46d9bb0)', 'dla60.in1k': 'recorded at first download',
}


def test_every_entry_is_sourced_cited_and_buildable():
    entries = weights.entries()
    assert len(entries) >= 50
    for e in entries:
        auto = e.automatic_sources
        assert len(auto) >= 2 or e.note, f'{e.name}: one source and no note saying why'
        assert all(s.cite for s in e.sources), e.name
        assert e.family in FAMILIES and (e.builds in ('DLASeg', 'CenterNet')) == bool(e.model_kwargs.get('flavor'))
        for s in auto:
            assert s.kind in ('url', 'hf', 'gdrive')
            if s.kind == 'url':
                assert re.match(r'^https?://[^\s]+$', s.where) and s.where.rsplit('/', 1)[1] == s.file, s
        with torch.device('meta'):
            dp.create_from_weights(e)
    for name, status in PINNED.items():
        assert weights.get(name).hash_status == status
    # torch.hub-style names: the pinned prefix is the one in the file name
    for e in entries:
        for s in e.sources:
            if s.kind == 'url' and s.sha256 and len(s.sha256) == 8:
                assert s.file.endswith(f'-{s.sha256}.pth'), s


def test_docs_list_every_name():
    doc = (ROOT / 'docs' / 'checkpoints.md').read_text()
    missing = [e.name for e in weights.entries() if f'`{e.name}`' not in doc]
    assert missing == []


def test_register_errors():
    good = Source('url', 'http://127.0.0.1:1/x.pth', 'x.pth')
    with pytest.raises(ValueError) as e:
        weights.register(WeightEntry('test/x', 'dla34', 'yolo', (good,)))
    assert str(e.value) == f"entry 'test/x': family 'yolo' unknown; allowed: {sorted(FAMILIES)}"
    with pytest.raises(ValueError) as e:
        weights.register(WeightEntry('test/x', 'dla34', 'timm', (Source('url', 'http://a/x.pth', 'x.pth',
                                                                          sha256='XYZ'),)))
    assert str(e.value) == "entry 'test/x' source 1: sha256 must be 8 to 64 lowercase hex digits, got 'XYZ'"
    with pytest.raises(ValueError) as e:
        weights.register(WeightEntry('test/../x', 'dla34', 'timm', (good,)))
    assert str(e.value).startswith("entry.name: 'test/../x' is not a name")
    with pytest.raises(ValueError) as e:
        weights.register(weights.get('dla34.in1k'))
    assert str(e.value) == "entry.name: 'dla34.in1k' is already registered; pass replace=True to overwrite it"
    with weights.registered(WeightEntry('test/x', 'dla34', 'timm', (good,))):
        assert 'test/x' in weights.names()
    assert 'test/x' not in weights.names()


def test_cli_list_fetch_path_verify(tmp_path, capsys):
    from safetensors.torch import save

    data = save({'w': torch.arange(6.0)})
    with LoopbackServer() as srv, weights.registered(
            WeightEntry('test/cli', 'dla46_c', 'timm', (Source('url', srv.add('/w', data), 'w.safetensors'),))):
        assert main(['weights', 'path', 'test/cli']) == 2
        assert capsys.readouterr().err == ("dla-plugins weights: error: weights: 'test/cli' is not cached "
                                           f"({tmp_path / 'home' / 'test/cli'}); run `dla-plugins weights fetch "
                                           'test/cli`\n')
        assert main(['weights', 'fetch', 'test/cli', '--no-progress']) == 0
        path = tmp_path / 'home' / 'test/cli' / 'w.safetensors'
        assert capsys.readouterr().out == (f'test/cli: {path} (from url {srv.url("/w")}; recorded at first download; '
                                           f'sha256 {sha256(data)})\n')
        assert main(['weights', 'path', 'test/cli']) == 0 and capsys.readouterr().out == f'{path}\n'
        assert main(['weights', 'verify']) == 0
        assert capsys.readouterr().out == (f'test/cli: ok (recorded at first download; sha256 {sha256(data)}; '
                                           f'{len(data)} bytes)\n')
        assert main(['weights', 'list']) == 0
        out = capsys.readouterr().out
        assert all(re.search(rf'^{re.escape(n)}\s', out, re.M) for n in weights.names())
        assert re.search(r'^test/cli\s+timm\s+dla46_c\s+\d+\.\d KiB\s+recorded at first download\s+0/1\s+1\s+yes',
                         out, re.M)
        path.write_bytes(data[:-1] + b'!')
        assert main(['weights', 'verify', 'test/cli']) == 1
        assert 'test/cli: FAILED: weights: cached file' in capsys.readouterr().out


def test_name_for_pretrained_tags():
    assert weights.name_for('dla34', True) == 'dla34.in1k'
    assert weights.name_for('dla34', 'ucbdrive') == 'dla34.ucbdrive'
    assert weights.name_for('dla34', 'tricks') == 'dla34+tricks'
    assert weights.name_for('dla34', 'centernet/ctdet_coco_dla_2x') == 'centernet/ctdet_coco_dla_2x'
    with pytest.raises(ValueError) as e:
        weights.name_for('dla60_res2net', 'ucbdrive')
    assert str(e.value) == ("pretrained: no dla60_res2net weights called 'ucbdrive'; allowed: [True, 'in1k', "
                            "'dla60_res2net.in1k']")
