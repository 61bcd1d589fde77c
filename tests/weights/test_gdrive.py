"""Google Drive sources through the real gdown against a loopback Drive: the test server plays drive.google.com and
drive.usercontent.google.com (their redirect, the virus-scan confirmation page and its form) behind an HTTPS proxy on
127.0.0.1 with a test CA, which is how gdown (requests) reaches them here: HTTPS_PROXY and REQUESTS_CA_BUNDLE."""
from pathlib import Path

import pytest

from dla_plugins import weights
from dla_plugins.weights import Source, WeightsError, gdrive
from dla_plugins.weights.fetch import _part_path
from tests.weights.common import child, entry, home, leftovers
from tests.weights.server import USERCONTENT, LoopbackServer

ID1, ID2 = '1AbCdEfGhIjKlMnOpQrStUvWxYz0', '1ZyXwVuTsRqPoNmLkJiHgFeDcBa9'


def downloads(srv: LoopbackServer, file_id: str) -> list:
    """The requests for the file's bytes (the usercontent host), in order."""
    return [r for r in srv.requests if r.host == USERCONTENT and f'id={file_id}' in r.path]


@pytest.fixture
def drive(monkeypatch):
    with LoopbackServer() as srv:
        for k, v in srv.proxy_env().items():
            monkeypatch.setenv(k, v)
        yield srv


def test_large_file_through_the_confirmation_page_with_no_resume_and_no_leftovers(drive, dla46_files):
    data = dla46_files['pth']
    file = drive.add_drive(ID1, data, 'model_last.pth', large=True)
    src = Source('gdrive', ID1, 'ctdet.pth')
    folder = home() / 'test/g'
    folder.mkdir(parents=True)
    _part_path(folder, src).write_bytes(data[:1000])  # a part an older version kept: Drive downloads start over
    with weights.registered(entry('test/g', src)):
        path = weights.fetch('test/g', progress=False)
    assert Path(path).read_bytes() == data and weights.cache_record('test/g').source == f'gdrive {ID1}'
    first, confirmed = downloads(drive, ID1)
    assert first.path == f'/download?id={ID1}&export=download'  # answered with the virus-scan page
    assert 'confirm=t' in confirmed.path and f'uuid={file.uuid}' in confirmed.path and confirmed.range is None
    assert sorted(p.name for p in folder.iterdir()) == ['.lock', 'ctdet.pth', 'record.json']  # no gdown temp files


def test_a_broken_drive_transfer_starts_over_and_leaves_nothing(drive, dla46_files):
    data = dla46_files['pth']
    drive.add_drive(ID1, data, 'a.pth', drop_after=len(data) // 3)
    with weights.registered(entry('test/h', Source('gdrive', ID1, 'h.pth'))):
        assert Path(weights.fetch('test/h', progress=False, retries=1)).read_bytes() == data
    assert [r.range for r in downloads(drive, ID1)] == [None, None]  # tried again from the start
    assert sorted(p.name for p in (home() / 'test/h').iterdir()) == ['.lock', 'h.pth', 'record.json']
    drive.add_drive(ID2, data, 'b.pth', drop_after=len(data) // 3, drops=10)
    with weights.registered(entry('test/i', Source('gdrive', ID2, 'i.pth'))), pytest.raises(WeightsError) as err:
        weights.fetch('test/i', progress=False, retries=1)
    assert f'  1. gdrive {ID2}: transfer broke after ' in str(err.value)
    assert len(downloads(drive, ID2)) == 2 and sorted(p.name for p in (home() / 'test/i').iterdir()) == ['.lock']


def test_a_stalled_drive_times_out_and_releases_the_lock(drive, dla46_files):
    """A Drive that accepts and never sends costs one attempt of the timeout; the next source is used and the fetch
    returns (the cache lock is released). In a child process: without a timeout it would never return."""
    data = dla46_files['pth']
    drive.add_drive(ID1, data, 'a.pth', stall=True)
    drive.add_drive(ID2, data, 'b.pth')
    e = entry('test/j', Source('gdrive', ID1, 'j.pth'), Source('gdrive', ID2, 'j.pth'))
    proc = child(e, '--timeout', '0.5', env=drive.proxy_env())
    try:
        out, errs = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, errs[-2000:]
    assert out.strip() == str(home() / 'test/j/j.pth') and Path(out.strip()).read_bytes() == data
    assert f'gdrive {ID1} failed: timed out after 0.5 s' in errs
    assert len(downloads(drive, ID1)) == 1 and leftovers('test/j') == []


def test_gdown_below_the_floor_is_named(drive, dla46_files, monkeypatch):
    from importlib.metadata import version

    monkeypatch.setattr(gdrive, 'GDOWN_FLOOR', '99.0')  # the installed gdown plays an old one
    drive.add_drive(ID1, dla46_files['pth'], 'a.pth')
    with weights.registered(entry('test/k', Source('gdrive', ID1, 'k.pth'))), pytest.raises(WeightsError) as err:
        weights.fetch('test/k', progress=False)
    assert (f"  1. gdrive {ID1}: needs gdown>=99.0 (download timeouts; Drive's confirmation page), found "
            f"{version('gdown')}: pip install -U 'dla-plugins[gdrive]'") in str(err.value).splitlines()
    assert drive.requests == []
