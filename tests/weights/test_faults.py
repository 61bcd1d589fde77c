"""The weights cache under races and faults, with real processes, a real loopback server and real files: concurrent
offline installs, failover leftovers, files that change upstream between two attempts, broken servers, a file size
limit, the stat stamp of cached files, and what a dead source costs."""
import json
import os
import resource
import signal
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import hf_hub_download
from safetensors.torch import save as safetensors_bytes

import dla_plugins as dp
from dla_plugins import weights
from dla_plugins.weights import Source, WeightsError
from tests.weights.common import child, entry, home, leftovers
from tests.weights.server import LoopbackServer, Route, closed_port, hub_headers, sha256


def _safetensors(seed: int) -> bytes:
    """A dla46_c state_dict as safetensors: same header (names, shapes, offsets) for every seed, other bytes."""
    torch.manual_seed(seed)
    state = dp.create_dla('dla46_c', num_classes=10).state_dict()
    return safetensors_bytes({k: v.contiguous() for k, v in state.items()})


def test_two_processes_install_from_the_hugging_face_cache_offline_at_once(dla46_files, tmp_path):
    st = dla46_files['safetensors']
    hub_cache = Path(os.environ['HF_HOME']) / 'hub'
    with LoopbackServer() as srv:  # fill the Hugging Face cache as any huggingface_hub program does
        srv.add('/acme/dla46_c.hfo/resolve/main/model.safetensors', st, headers=hub_headers(st))
        hf_hub_download('acme/dla46_c.hfo', 'model.safetensors', endpoint=srv.url(), cache_dir=hub_cache)
    e = entry('test/hfo', Source('hf', 'acme/dla46_c.hfo', 'model.safetensors'))  # unpinned: read at install
    go = tmp_path / 'go'
    procs = [child(e, '--go', str(go), env=dict(HF_HUB_OFFLINE='1')) for _ in range(2)]
    for p in procs:
        assert p.stdout.readline().strip() == 'ready', p.stderr.read()
    go.touch()  # both start installing at the same moment
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    path = home() / 'test/hfo/model.safetensors'
    assert [o[0].strip() for o in outs] == [str(path), str(path)]
    assert path.read_bytes() == st and weights.cache_record('test/hfo').sha256 == sha256(st)
    assert leftovers('test/hfo') == []


def test_a_success_leaves_no_part_of_any_source(dla46_files):
    data = dla46_files['pth']
    with LoopbackServer() as srv:
        broken = srv.add('/broken.pth', data, drop_after=len(data) // 2, drops=10)
        e = entry('test/s', Source('url', broken, 's.pth'), Source('url', srv.add('/good.pth', data), 's.pth'))
        with weights.registered(e):
            assert Path(weights.fetch('test/s', progress=False, retries=1)).read_bytes() == data
        assert len(srv.gets('/broken.pth')) == 2 and len(srv.gets('/good.pth')) == 1
    assert leftovers('test/s') == [] and sorted(p.name for p in (home() / 'test/s').iterdir()) == [
        '.lock', 'record.json', 's.pth']


@pytest.mark.parametrize('validator', ['etag', 'last-modified', 'none'])
def test_a_file_changed_upstream_is_never_spliced(validator):
    """Version A breaks mid-file, the server then has version B: the retry gets B whole (If-Range) or starts over."""
    a, b = _safetensors(1), _safetensors(2)
    assert len(a) == len(b) and a[:8] == b[:8] and a != b  # an A+B splice would read as a valid file
    cut = len(a) // 2
    dated = {'last-modified': ('Mon, 01 Jan 2024 00:00:00 GMT', 'Tue, 02 Jan 2024 00:00:00 GMT')}.get(validator)
    opts = [dict(etag=validator == 'etag', headers={'Last-Modified': d} if dated else {}) for d in (dated or (0, 0))]
    with LoopbackServer() as srv:
        url = srv.add('/v.safetensors', a, drop_after=cut, **opts[0])
        sent = srv.routes['/v.safetensors'].validator()
        with weights.registered(entry('test/v', Source('url', url, 'v.safetensors'))):
            with pytest.raises(WeightsError, match='the part is kept for a resume'):
                weights.fetch('test/v', progress=False, retries=0)
            srv.routes['/v.safetensors'] = Route(data=b, **opts[1])
            path = weights.fetch('test/v', progress=False, retries=0)
        second = srv.gets('/v.safetensors')[1]
    assert Path(path).read_bytes() == b and weights.cache_record('test/v').sha256 == sha256(b)
    if validator == 'none':  # nothing proves the server still has A, and no hash would catch a splice: start over
        assert (second.range, second.if_range) == (None, None)
    else:  # the server's validator no longer matches: it answered 200 with the whole of B
        assert (second.range, second.if_range) == (f'bytes={cut}-', sent)
    assert leftovers('test/v') == []


def test_a_bad_content_range_deletes_the_part(dla46_files):
    data = dla46_files['pth']
    cut, n = len(data) // 3, len(data)
    with LoopbackServer() as srv:
        url = srv.add('/r.pth', data, drop_after=cut, range_shift=1)  # its 206s announce the wrong start
        with weights.registered(entry('test/r', Source('url', url, 'r.pth'))):
            with pytest.raises(WeightsError, match='the part is kept for a resume'):
                weights.fetch('test/r', progress=False, retries=0)
            with pytest.raises(WeightsError) as err:
                weights.fetch('test/r', progress=False, retries=0)
            assert f"bad Content-Range 'bytes {cut + 1}-{n - 1}/{n}' for a resume at {cut}; the part is deleted" in str(
                err.value)
            assert leftovers('test/r') == []
            assert Path(weights.fetch('test/r', progress=False)).read_bytes() == data  # the next call starts over
        assert [r.range for r in srv.gets('/r.pth')] == [None, f'bytes={cut}-', None]


def _file_size_limit() -> None:
    """In the child: files may not grow past 256 KiB (writes beyond fail with EFBIG instead of killing it)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))


def test_a_full_disk_is_reported_at_once_and_not_retried(dla46_files):
    data = dla46_files['pth']
    with LoopbackServer() as srv:
        e = entry('test/f', Source('url', srv.add('/f.pth', data), 'f.pth'),
                  Source('url', srv.add('/g.pth', data), 'g.pth'))
        proc = child(e, preexec_fn=_file_size_limit)
        out, errs = proc.communicate(timeout=120)
        assert proc.returncode == 1 and out == ''
        folder = home() / 'test/f'
        assert (f"WeightsError: weights: could not write 'test/f' to {folder}: File too large (EFBIG); free space "
                f'there or set DLA_PLUGINS_HOME to a folder on a disk with room (not retried)') in errs
        assert len(srv.gets('/f.pth')) == 1 and srv.gets('/g.pth') == []  # no retry, no failover
    assert leftovers('test/f') == []  # the part that filled the disk is deleted


def test_a_cached_file_is_rehashed_only_when_its_stamp_changes(dla46_files, monkeypatch):
    data = dla46_files['pth']
    with LoopbackServer() as srv, weights.registered(entry('test/q', Source('url', srv.add('/q', data), 'q.pth'))):
        path = Path(weights.fetch('test/q', progress=False))
        rec = weights.cache_record('test/q')
        st = path.stat()
        with open(path, 'r+b') as f:  # other bytes, same size, same inode, and the old mtime put back
            f.seek(100)
            f.write(bytes([data[100] ^ 0xFF]))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert weights.fetch('test/q', progress=False) == str(path)  # trusted by its stamp: not read again
        assert path.read_bytes() != data and len(srv.gets('/q')) == 1
        assert rec.stamp == (st.st_size, st.st_mtime_ns, st.st_ino)
        with pytest.raises(WeightsError, match='does not match its record'):
            weights.verify('test/q')  # verify always re-hashes
        with open(path, 'ab') as f:
            f.write(b'\0')
        monkeypatch.setenv('DLA_PLUGINS_OFFLINE', '1')
        with pytest.raises(WeightsError) as err:
            weights.fetch('test/q', progress=False)  # a new size: re-hashed, and it fails
        assert str(err.value) == (f"weights: cached file {str(path)!r} of 'test/q' does not match its record "
                                  f'(recorded sha256 {rec.sha256}, {rec.size} bytes; found {rec.size + 1} bytes)')
        monkeypatch.delenv('DLA_PLUGINS_OFFLINE')
        assert Path(weights.fetch('test/q', progress=False)).read_bytes() == data  # online: fetched again
        # a record written before stamps existed: re-hashed once, then stamped
        record = home() / 'test/q/record.json'
        record.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items() if k != 'stamp'}))
        assert weights.cache_record('test/q').stamp is None
        assert weights.fetch('test/q', progress=False) == str(path)
        assert weights.cache_record('test/q').stamp == weights.cache_record('test/q').stamp is not None
        assert len(srv.gets('/q')) == 2


def test_a_dead_source_costs_one_attempt(monkeypatch):
    """Refused, an error status and a stall each cost one request (huggingface_hub's own retries included) and at
    most the timeout; the figure for a whole entry is in docs/checkpoints.md."""
    refused = f'http://127.0.0.1:{closed_port()}/x.pth'
    with LoopbackServer() as hub, LoopbackServer() as srv:
        hub.add('/acme/busy/resolve/main/model.safetensors', status=503)
        hub.add('/acme/stall/resolve/main/model.safetensors', stall=True)
        monkeypatch.setenv('HF_ENDPOINT', hub.url())
        e = entry('test/t', Source('hf', 'acme/busy', 'model.safetensors'),
                  Source('hf', 'acme/stall', 'model.safetensors'),
                  Source('url', refused, 'x.pth'), Source('url', srv.add('/stall.pth', stall=True), 'x.pth'))
        start = time.monotonic()
        with weights.registered(e), pytest.raises(WeightsError) as err:
            weights.fetch('test/t', progress=False, timeout=0.5)
        took = time.monotonic() - start
        lines = str(err.value).splitlines()
        assert [(r.method, r.path) for r in hub.requests] == [('HEAD', '/acme/busy/resolve/main/model.safetensors'),
                                                             ('HEAD', '/acme/stall/resolve/main/model.safetensors')]
        assert [r.path for r in srv.requests] == ['/stall.pth']
    assert lines[1:5] == ['  1. hf acme/busy/model.safetensors: HTTP 503 Service Unavailable',
                          '  2. hf acme/stall/model.safetensors: timed out after 0.5 s',
                          f'  3. url {refused}: connection refused',
                          f'  4. url {srv.url("/stall.pth")}: timed out after 0.5 s']
    assert took < 30, took  # not a timing test: a bound far above the ~1 s it takes, far below huggingface_hub's own
