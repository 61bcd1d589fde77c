"""Fetching registry files over real HTTP on loopback (a server each test starts and stops), with real checkpoint
files: our own models' state_dicts and the reference layouts rebuilt from tests/golden. Never the internet."""
import dataclasses
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download
from safetensors.torch import save as safetensors_bytes

import dla_plugins as dp
from dla_plugins import weights
from dla_plugins.weights import Source, WeightsError
from tests.golden import load_manifest, write_checkpoint
from tests.weights.common import assert_loads, child, entry, home, leftovers, parts
from tests.weights.server import LoopbackServer, closed_port, hub_headers, sha256


def test_fetch_caches_records_and_loads(dla46_files):
    data = dla46_files['safetensors']
    with LoopbackServer() as srv, weights.registered(entry('test/a', Source('url', srv.add('/a', data),
                                                                             'model.safetensors'))):
        path = weights.fetch('test/a', progress=False)
        assert path == str(home() / 'test/a/model.safetensors')
        assert Path(path).read_bytes() == data
        rec = weights.cache_record('test/a')
        assert (rec.sha256, rec.size, rec.hash_status) == (sha256(data), len(data), 'recorded at first download')
        assert rec.source == f'url {srv.url("/a")}'
        assert weights.fetch('test/a', progress=False) == path  # from the cache: verified, no request
        assert len(srv.gets('/a')) == 1
        assert_loads(path, dla46_files['state'])
        assert weights.resolve('dlap://test/a') == path


def test_failover_past_refused_port_and_404(dla46_files):
    refused = f'http://127.0.0.1:{closed_port()}/x.pth'
    with LoopbackServer() as srv:
        good = srv.add('/good.pth', dla46_files['pth'])
        e = entry('test/b', Source('url', refused, 'x.pth'), Source('url', srv.url('/missing.pth'), 'x.pth'),
                  Source('url', good, 'good.pth'))
        with weights.registered(e):
            path = weights.fetch('test/b', progress=False)
        assert Path(path).name == 'good.pth' and weights.cache_record('test/b').source == f'url {good}'
        assert len(srv.gets('/missing.pth')) == 1 and leftovers('test/b') == []
        assert_loads(path, dla46_files['state'])


def test_hash_mismatch_is_rejected_and_the_next_source_used(dla46_files):
    pth, st = dla46_files['pth'], dla46_files['safetensors']
    tampered = bytearray(pth)
    tampered[len(pth) // 2] ^= 0xFF
    with LoopbackServer() as srv:
        e = entry('test/c',
                  Source('url', srv.add('/tampered.pth', bytes(tampered)), 'c.pth', sha256=sha256(pth)[:8]),
                  Source('url', srv.add('/page.html', b'<!DOCTYPE html><html>quota exceeded</html>'), 'c.pth'),
                  Source('url', srv.add('/c.safetensors', st), 'c.safetensors', sha256=sha256(st)))
        with weights.registered(e):
            path = weights.fetch('test/c', progress=False)
        assert Path(path).read_bytes() == st
        assert weights.cache_record('test/c').hash_status == 'pinned sha256'
        assert leftovers('test/c') == [] and not (home() / 'test/c/c.pth').exists()


def test_broken_connection_resumes_with_range_and_never_caches_a_partial_file(dla46_files):
    data = dla46_files['pth']
    cut = len(data) // 3
    with LoopbackServer() as srv:
        url = srv.add('/d.pth', data, drop_after=cut)
        with weights.registered(entry('test/d', Source('url', url, 'd.pth'))):
            with pytest.raises(WeightsError) as e:
                weights.fetch('test/d', progress=False, retries=0)
            assert f'connection closed after {cut} of {len(data)} bytes; the part is kept for a resume' in str(e.value)
            assert weights.cache_record('test/d') is None and not (home() / 'test/d/d.pth').exists()
            [part] = parts('test/d')
            assert part.stat().st_size == cut
            path = weights.fetch('test/d', progress=False)
        etag = srv.routes['/d.pth'].validator()
        assert [(r.range, r.if_range) for r in srv.gets('/d.pth')] == [(None, None), (f'bytes={cut}-', etag)]
        assert Path(path).read_bytes() == data and leftovers('test/d') == []
        # within one call: the broken connection is resumed at once (retries)
        srv.add('/e.pth', data, drop_after=cut)
        with weights.registered(entry('test/e', Source('url', srv.url('/e.pth'), 'e.pth'))):
            assert Path(weights.fetch('test/e', progress=False, retries=1)).read_bytes() == data
        assert [r.range for r in srv.gets('/e.pth')] == [None, f'bytes={cut}-']


def test_killed_download_resumes_and_leaves_no_corrupt_entry(dla46_files):
    data = dla46_files['pth']
    with LoopbackServer() as srv:
        e = entry('test/k', Source('url', srv.add('/k.pth', data, delay=0.05), 'k.pth'))
        proc = child(e)
        folder, deadline = home() / 'test/k', time.time() + 60
        while time.time() < deadline and not any(p.stat().st_size > 1 << 17 for p in folder.glob('.part-*')):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        [part] = parts('test/k')
        kept = part.stat().st_size
        assert 0 < kept < len(data)
        assert weights.cache_record('test/k') is None and not (folder / 'k.pth').exists()
        srv.routes['/k.pth'].delay = 0
        with weights.registered(e):
            path = weights.fetch('test/k', progress=False)
        assert Path(path).read_bytes() == data and leftovers('test/k') == []
        resumed = srv.gets('/k.pth')[-1].range
        assert resumed is not None and int(resumed[len('bytes='):-1]) >= kept


def test_two_processes_fetching_at_once_download_once(dla46_files):
    data = dla46_files['pth']
    with LoopbackServer() as srv:
        e = entry('test/l', Source('url', srv.add('/l.pth', data, delay=0.02), 'l.pth'))
        procs = [child(e) for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        assert {o[0].strip() for o in outs} == {str(home() / 'test/l/l.pth')}
        assert len(srv.gets('/l.pth')) == 1
        assert Path(outs[0][0].strip()).read_bytes() == data


def test_offline_uses_the_cache_only(dla46_files, monkeypatch):
    data = dla46_files['safetensors']
    with LoopbackServer() as srv:
        e1 = entry('test/m', Source('url', srv.add('/m', data), 'm.safetensors'))
        e2 = entry('test/n', Source('url', srv.add('/n', data), 'n.safetensors'))
        with weights.registered(e1, e2):
            path = weights.fetch('test/m', progress=False)
            for var in ('DLA_PLUGINS_OFFLINE', 'HF_HUB_OFFLINE'):
                monkeypatch.setenv(var, '1')
                assert weights.fetch('test/m', progress=False) == path
                with pytest.raises(WeightsError) as err:
                    weights.fetch('test/n', progress=False)
                assert str(err.value) == (
                    f"weights: 'test/n' is not in the cache ({home() / 'test/n'}) and downloads are off ({var}=1); "
                    f'run `dla-plugins weights fetch test/n` where there is a network and copy {home()}, or unset '
                    f'{var}')
                monkeypatch.delenv(var)
        assert len(srv.requests) == 1


def test_the_final_error_lists_every_source(dla46_files, monkeypatch):
    monkeypatch.setitem(sys.modules, 'gdown', None)  # the [gdrive] extra is not installed
    pth = dla46_files['pth']
    port = closed_port()
    with LoopbackServer() as srv:
        monkeypatch.setenv('DLA_PLUGINS_MIRROR', srv.url('/mirror'))
        e = entry('test/o', Source('url', f'http://127.0.0.1:{port}/o.pth', 'o.pth'),
                  Source('url', srv.url('/gone.pth'), 'o.pth'),
                  Source('url', srv.add('/bad.pth', pth), 'o.pth', sha256='0123abcd'),
                  Source('gdrive', '1AbCdEf', 'o.pth'),
                  Source('manual', 'https://pan.baidu.com/s/xyz', 'o.pth', note='Baidu, access code abcd'))
        with weights.registered(e), pytest.raises(WeightsError) as err:
            weights.fetch('test/o', progress=False)
    assert str(err.value) == '\n'.join([
        "weights: could not fetch 'test/o'; tried 5 source(s):",
        f'  1. mirror {srv.url("/mirror/test/o/o.pth")}: HTTP 404 Not Found',
        f'  2. url http://127.0.0.1:{port}/o.pth: connection refused',
        f'  3. url {srv.url("/gone.pth")}: HTTP 404 Not Found',
        f'  4. url {srv.url("/bad.pth")}: sha256 mismatch: published 0123abcd, got {sha256(pth)[:8]}',
        "  5. gdrive 1AbCdEf: needs gdown, which is not installed: pip install 'dla-plugins[gdrive]'",
        f"  download by hand: https://pan.baidu.com/s/xyz (Baidu, access code abcd) and save it as "
        f"{home() / 'test/o/o.pth'}"])
    assert leftovers('test/o') == [] and weights.cache_record('test/o') is None


def test_mirror_first_and_a_cache_folder_served_as_a_mirror(dla46_files, tmp_path, monkeypatch):
    data = dla46_files['safetensors']
    refused = f'http://127.0.0.1:{closed_port()}/p'
    with LoopbackServer() as upstream, LoopbackServer() as mirror:
        e = entry('test/p', Source('url', upstream.add('/p', data), 'model.safetensors', sha256=sha256(data)))
        with weights.registered(e):
            weights.fetch('test/p', progress=False)  # fills the cache of a connected machine
        first_home = home()
        mirror.add_folder('/dla', first_home)
        monkeypatch.setenv('DLA_PLUGINS_HOME', str(tmp_path / 'cluster'))
        monkeypatch.setenv('DLA_PLUGINS_MIRROR', mirror.url('/dla'))
        with weights.registered(dataclasses.replace(e, sources=(dataclasses.replace(e.sources[0], where=refused),))):
            path = weights.fetch('test/p', progress=False)
            assert weights.cache_record('test/p').source == f'mirror {mirror.url("/dla/test/p/model.safetensors")}'
            assert weights.cache_record('test/p').hash_status == 'pinned sha256'
            # a local folder works as a mirror too
            monkeypatch.setenv('DLA_PLUGINS_HOME', str(tmp_path / 'airgap'))
            monkeypatch.setenv('DLA_PLUGINS_MIRROR', str(first_home))
            assert Path(weights.fetch('test/p', progress=False)).read_bytes() == data
        assert Path(path).read_bytes() == data and len(upstream.gets('/p')) == 1


def test_cached_file_is_verified_on_every_use(dla46_files, monkeypatch):
    data = dla46_files['pth']
    with LoopbackServer() as srv, weights.registered(entry('test/q', Source('url', srv.add('/q', data), 'q.pth'))):
        path = Path(weights.fetch('test/q', progress=False))
        rec = weights.cache_record('test/q')
        assert weights.verify('test/q') == rec
        path.write_bytes(data[:100] + b'X' + data[101:])
        with pytest.raises(WeightsError) as err:
            weights.verify('test/q')
        assert str(err.value) == (f"weights: cached file {str(path)!r} of 'test/q' does not match its record "
                                  f'(recorded sha256 {rec.sha256}, {rec.size} bytes; found sha256 '
                                  f'{sha256(path.read_bytes())})')
        monkeypatch.setenv('DLA_PLUGINS_OFFLINE', '1')
        with pytest.raises(WeightsError, match='does not match its record'):
            weights.fetch('test/q', progress=False)
        monkeypatch.delenv('DLA_PLUGINS_OFFLINE')
        assert Path(weights.fetch('test/q', progress=False)).read_bytes() == data  # fetched again
        assert len(srv.gets('/q')) == 2


def test_file_placed_by_hand_is_checked_against_the_published_hash(dla46_files):
    data = dla46_files['pth']
    e = entry('test/r', Source('url', f'http://127.0.0.1:{closed_port()}/r.pth', 'r.pth', sha256=sha256(data)))
    folder = home() / 'test/r'
    folder.mkdir(parents=True)
    with weights.registered(e):
        (folder / 'r.pth').write_bytes(data[:-1])
        with pytest.raises(WeightsError) as err:
            weights.verify('test/r')
        assert str(err.value) == (f"weights: file {str(folder / 'r.pth')!r} placed in the cache for 'test/r' is "
                                  f'not the published file: sha256 mismatch: published {sha256(data)}, got '
                                  f'{sha256(data[:-1])}')
        (folder / 'r.pth').write_bytes(data)
        assert weights.fetch('test/r', progress=False) == str(folder / 'r.pth')
        assert weights.cache_record('test/r').source == 'placed in the cache by hand'


def test_hub_source_through_huggingface_hub_and_a_redirected_release_url(dla46_files, monkeypatch):
    st, pth = dla46_files['safetensors'], dla46_files['pth']
    with LoopbackServer() as srv:
        srv.add('/acme/dla46_c.test/resolve/main/model.safetensors', st, headers=hub_headers(st))
        monkeypatch.setenv('HF_ENDPOINT', srv.url())
        hub = entry('test/hub', Source('hf', 'acme/dla46_c.test', 'model.safetensors', sha256=sha256(st)))
        srv.add('/releases/download/v1/s.pth', redirect='/objects/s.pth')
        srv.add('/objects/s.pth', pth)
        rel = entry('test/rel', Source('url', srv.url('/releases/download/v1/s.pth'), 's.pth'))
        with weights.registered(hub, rel):
            path = weights.fetch('test/hub', progress=False)
            assert Path(path).read_bytes() == st
            assert weights.cache_record('test/hub').source == 'hf acme/dla46_c.test/model.safetensors'
            assert Path(weights.fetch('test/rel', progress=False)).read_bytes() == pth
            # a Hugging Face cache that holds the file (filled as timm or any huggingface_hub program fills it) is
            # used: online after one metadata request, offline as the cache
            hub_cache = Path(os.environ['HF_HOME']) / 'hub'
            hf_hub_download('acme/dla46_c.test', 'model.safetensors', endpoint=srv.url(), cache_dir=hub_cache)
            gets = len(srv.gets('/acme/dla46_c.test/resolve/main/model.safetensors'))
            monkeypatch.setenv('DLA_PLUGINS_HOME', str(home().parent / 'other'))
            assert Path(weights.fetch('test/hub', progress=False)).read_bytes() == st
            assert len(srv.gets('/acme/dla46_c.test/resolve/main/model.safetensors')) == gets
            monkeypatch.setenv('DLA_PLUGINS_HOME', str(home().parent / 'offline'))
            monkeypatch.setenv('HF_HUB_OFFLINE', '1')
            assert Path(weights.fetch('test/hub', progress=False)).read_bytes() == st
    assert_loads(path, dla46_files['state'])


# one real registry entry per layout family, served from loopback: its family and network settings must be the
# ones the reference file is recognised as, and the file must load strictly into the model the entry builds
FAMILY_FIXTURES = {
    'centernet/ctdet_coco_dla_2x': 'centernet_dla34_dcn', 'centernet/ctdet_coco_dlav0_1x': 'centernet_dla34_v0',
    'fairmot/fairmot_dla34': 'fairmot_dla34_dcn', 'centertrack/coco_tracking': 'centertrack_dla34_dcn',
    'mmdet3d/smoke_dla34_kitti': 'mmdet3d_smoke_dla34', 'centernet2/CenterNet-S4_DLA_8x': 'centernet2_dlaseg',
    'centernet2/CenterNet2_DLA-BiFPN-P3_4x': 'centernet2_dla_fcos_bifpn',
    'omni3d/cubercnn_dla34_fpn': 'centernet2_dla_bifpn', 'dla102x.ucbdrive': 'ucbdrive_dla102x',
    'dla34.ucbdrive': 'ucbdrive_dla34', 'smoke/smoke_dla34_kitti': 'smoke_dla34_dcn_gn',
    'km3d/km3d_dla34_kitti_train': 'km3d_dla34_dcn', 'monodle/centernet3d_dla34_kitti': 'monodle_dla34',
    'trades/mot_half': 'trades_dla34_dcn', 'centerfusion/centerfusion_e60': 'centerfusion_dla34_dcn',
    'permatrack/kitti_half_pd_5ep': 'permatrack_dla34_dcn',
}


@pytest.mark.parametrize('name', sorted(FAMILY_FIXTURES) + ['dla34.in1k'])
def test_registry_entry_loads_its_reference_layout_strictly(name, tmp_path):
    real = weights.get(name)
    # the source that delivers the entry's own layout (a .ucbdrive entry may try timm's re-saved copy first)
    src = next(s for s in real.automatic_sources if (s.family or real.family) == real.family)
    if name in FAMILY_FIXTURES:
        ckpt = write_checkpoint(load_manifest(FAMILY_FIXTURES[name]), str(tmp_path / 'ref.pth'))
    else:  # timm's layout is ours: a dla34 ImageNet classifier as timm's hub serves it (safetensors)
        ckpt = tmp_path / 'model.safetensors'
        ckpt.write_bytes(safetensors_bytes(dp.create_dla('dla34', num_classes=1000).state_dict()))
    with LoopbackServer() as srv:
        test = dataclasses.replace(real, name=f'test/{name}', sources=(
            Source('url', srv.add('/ref.pth', Path(ckpt)), src.file),))
        with weights.registered(test):
            path = weights.fetch(test.name, progress=False)
    model = dp.create_from_weights(test)
    report = dp.load_checkpoint(model, path)
    assert report.layout == real.family
    if real.builds == 'DLASeg':
        assert {k: v for k, v in report.model_kwargs.items() if v is not None} == dict(real.model_kwargs)


def test_describe_load_and_resolve_errors():
    assert weights.describe_load('dla34.in1k', 'hf timm/dla34.in1k/model.safetensors', 'pinned sha256', loaded=302,
                                 skipped={'fc.weight': 'x', 'fc.bias': 'x'}, into='DLA') == (
        'weights dla34.in1k: from hf timm/dla34.in1k/model.safetensors (pinned sha256); loaded 302 tensors into DLA; '
        'skipped 2 (fc.weight, fc.bias)')
    with pytest.raises(ValueError) as err:
        weights.resolve('https://example.com/x.pth')
    assert str(err.value) == "uri: expected 'dlap://NAME', got 'https://example.com/x.pth'"
    with pytest.raises(ValueError) as err:
        weights.fetch('dla35.in1k')
    assert str(err.value) == f"weights: unknown name 'dla35.in1k'; allowed: {weights.names()}"
