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
        assert all(s.cite for s in e.sources + e.retired), e.name
        assert all(s.note for s in e.retired), f'{e.name}: a retired source without the reason it is gone'
        assert not {s.where for s in e.retired} & {s.where for s in e.sources}, e.name
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


def test_every_entry_without_an_automatic_source_says_how_to_get_it():
    """The drift check on the data: an entry nobody can download automatically must say why and how."""
    bad = [e.name for e in weights.entries() if not e.automatic_sources and not e.note]
    assert bad == []
    manual = Source('manual', 'https://pan.baidu.com/s/x', 'x.pth', note='Baidu, access code abcd')
    with pytest.raises(ValueError) as e:
        weights.register(WeightEntry('test/manual', 'dla34', 'timm', (manual,)))
    assert str(e.value) == ("entry 'test/manual': no automatic source and no note; allowed: at least one source of "
                            "kind ['url', 'hf', 'gdrive'], or a note saying how to get the file")
    with weights.registered(WeightEntry('test/manual', 'dla34', 'timm', (manual,), note='Baidu only')):
        assert weights.get('test/manual').hash_status == 'recorded at first download'
        with pytest.raises(weights.WeightsError) as e:
            weights.fetch('test/manual', progress=False)
        folder = weights.cache_dir() / 'test/manual'
        assert str(e.value) == ("weights: 'test/manual' has no automatic source (Baidu only):\n"
                                f'  download by hand: https://pan.baidu.com/s/x (Baidu, access code abcd) and save it '
                                f'as {folder / "x.pth"}\n'
                                '  (a mirror holding test/manual/<file> can be named with DLA_PLUGINS_MIRROR)')
        folder.mkdir(parents=True, exist_ok=True)  # placed by hand: recorded, then served from the cache
        torch.save({'w': torch.ones(2)}, folder / 'x.pth')
        assert weights.fetch('test/manual', progress=False) == str(folder / 'x.pth')


def test_fixes_of_issue_27():
    """Dead Drive ids are history, not sources; CenterNet2's P5_640 ST file is a BiFPN bottom-up; the published
    OpenVINO sha256 pins are used; pinned HTTPS before unpinned plain-http in every .ucbdrive entry."""
    retired = [s for e in weights.entries() for s in e.retired]
    assert len(retired) == 18 and all(s.kind == 'gdrive' for s in retired)
    for prefix, n in (('centernet/', 8), ('centertrack/', 6), ('centernet2/', 4)):
        assert sum(len(e.retired) for e in weights.entries() if e.name.startswith(prefix)) == n
        assert all(len(e.automatic_sources) == 1 for e in weights.entries() if e.name.startswith(prefix)
                   and e.retired)
    assert weights.get('centernet2/CenterNet2_DLA-BiFPN-P5_640_24x_ST').family == 'centernet2-bifpn'
    assert weights.get('dla34.ucbdrive').sources[0].sha256 == (
        'ba72cf86426e6333d9e8c6c7a8cae5549879212e48ae3aaad4bc8a7d009c34e1')
    assert weights.get('centernet/ctdet_coco_dlav0_1x').sources[0].sha256 == (
        '23a4ff7102c47c427bc1f24cec2059b8d837a0253363978d467a70e643b699d3')
    bin102 = weights.get('dla102.in1k').sources[1]
    assert (bin102.file, bin102.sha256) == ('pytorch_model.bin',
                                            '1cba0d9c0bafc01f7383a464ca9fb3de9af6e490374096cec6f7e903220f765d')
    assert bin102.cite.startswith('https://huggingface.co/timm/dla102.in1k/blob/eb213ea9405e9434895facd3656a48b7ded99092')
    for e in weights.entries():
        auto = e.automatic_sources
        plain = [i for i, s in enumerate(auto) if s.where.startswith('http://') and not s.pinned]
        https = [i for i, s in enumerate(auto) if s.where.startswith('https://') and s.pinned and s.kind == 'url']
        if plain and https:
            assert min(https) < min(plain), e.name
    assert all('Res2Net/Res2Net-PretrainedModels' in s.cite for n in ('dla60_res2net.in1k', 'dla60_res2next.in1k')
               for s in weights.get(n).sources if s.kind == 'url')


def test_list_json_reports_count_families_and_entries(capsys):
    import json

    assert main(['weights', 'list', '--format', 'json']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['count'] == len(weights.names()) == len(out['entries'])
    assert [r['name'] for r in out['entries']] == weights.names()
    assert out['families'] == {f: sum(e.family == f for e in weights.entries())
                               for f in sorted({e.family for e in weights.entries()})}
    row = next(r for r in out['entries'] if r['name'] == 'centernet/ctdet_coco_dla_2x')
    assert row['automatic_sources'] == 1 and row['retired'][0]['where'] == '1pl_-ael8wERdUREEnaIfqOV_VF2bEVRT'
    assert row['cached'] is False and row['sources'][0]['hash'] == 'recorded at first download'


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
        assert f'\n{len(weights.names())} entries, {len({e.family for e in weights.entries()})} layout families' in out
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


# issue 27's first list: every public DLA file with a per-file link (or a folder) that the registry lacked
ISSUE_27_NAMES = {
    'centernet/exdet_coco_dla': 'centernet', 'centertrack/mot17_fulltrain_sc': 'centertrack',
    'centertrack/mot17_half_sc': 'centertrack', 'centertrack/kitti_half': 'centertrack',
    'centertrack/kitti_half_sc': 'centertrack', 'centertrack/nuScenes_3Ddetection_e140': 'centernet',
    'centertrack/coco_pose_tracking': 'centertrack', 'trades/crowdhuman': 'centernet', 'trades/mot_half': 'centernet',
    'trades/nuscenes': 'centernet', 'trades/nuScenes_3Ddetection_e140': 'centernet',
    'centerfusion/centerfusion_e60': 'centernet', 'centerfusion/centernet_baseline_e170': 'centernet',
    'km3d/km3d_dla34_kitti_train': 'centernet', 'km3d/km3d_dla34_kitti_train_rightaug': 'centernet',
    'permatrack/pd_17fr_21ep_vis': 'centertrack', 'permatrack/kitti_half_pd_5ep': 'centertrack',
    'permatrack/mot_half': 'centertrack', 'permatrack/nu_stage_3_17fr': 'centertrack', 'deft/model_mot': 'centertrack',
    'deft/model_kitti': 'centertrack', 'deft/model_nuscenes': 'centertrack',
    'monoflex/monoflex_kitti': 'centernet', 'smoke/smoke_dla34_kitti': 'smoke',
    'monodle/centernet3d_dla34_kitti': 'monodle',
}


def test_issue_27_files_are_named_sourced_and_cited():
    for name, family in ISSUE_27_NAMES.items():
        e = weights.get(name)
        assert e.family == family and e.note, name
        assert all(re.match(r'^[A-Za-z0-9-]+/[A-Za-z0-9_.-]+@[0-9a-f]{7,} ', s.cite) for s in e.sources), name
    assert weights.get('centernet/exdet_coco_dla').sources[0].where == '1PFcEqN0KjFuq9XaqzB7TkVD3pvXZx04e'
    assert [s.kind for s in weights.get('deft/model_mot').sources] == ['manual']
    assert weights.get('permatrack/mot_half').sources[0].where == (
        'https://tri-ml-public.s3.amazonaws.com/github/permatrack/mot_half.pth')
