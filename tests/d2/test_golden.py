"""Reference checkpoints of every dense family -> ``python -m d2_ext.convert`` -> ``MODEL.WEIGHTS`` of the DLA-Up
backbone (``MODEL.DLAP.NECK.FLAVOR``) -> the reference's features."""
import shlex
from urllib.parse import urlparse

import pytest
import torch
import torch.nn as nn
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_backbone, build_model

from d2_ext import add_dlap_config
from d2_ext.convert import main as convert_main
from tests.golden import fixture_names, load_manifest, load_outputs, make_input, tolerance, write_checkpoint

# dense dla34 fixtures our d2 backbone reproduces from the image alone (CenterTrack also needs previous frames)
NAMES = [n for n in fixture_names() if 'features' in load_manifest(n)['outputs'] and 'centertrack' not in n]
NAMES += ['centernet2_dlaseg']  # its stride-4 output is named 'dla2'


@pytest.mark.parametrize('name', NAMES)
def test_converted_checkpoint_reproduces_reference_features(name, tmp_path, capsys):
    manifest = load_manifest(name)
    src = write_checkpoint(manifest, str(tmp_path / 'ref.pth'))
    dst = str(tmp_path / 'd2.pth')
    convert_main([src, dst, '--arch', 'dla34'])
    printed = capsys.readouterr().out
    assert printed.startswith('layout: ') and 'MODEL.BACKBONE.NAME build_dlap_up_backbone' in printed
    opts = shlex.split(printed.split('build it with: ')[1])
    ctdet = opts[:2] == ['MODEL.META_ARCHITECTURE', 'DLAPCenterNet']  # CenterNet's ctdet files keep their heads
    assert ctdet == (name in ('centernet_dla34_dcn', 'centernet_dla34_v0')), opts[:2]
    cfg = get_cfg()
    add_dlap_config(cfg)
    cfg.merge_from_list(opts + ['MODEL.DEVICE', 'cpu'])
    if ctdet:
        holder = build_model(cfg)
    else:
        holder = nn.Module()
        holder.backbone = build_backbone(cfg)
    ckpt = DetectionCheckpointer(holder)
    ckpt._parsed_url_during_load = urlparse(dst)
    incompatible = ckpt._load_model(ckpt._load_file(dst))
    assert incompatible.missing_keys == [] and incompatible.unexpected_keys == []
    assert incompatible.incorrect_shapes == []
    holder.eval()
    ref = load_outputs(name)
    ref = ref['features'] if 'features' in ref else ref['dla2']
    with torch.no_grad():
        feats = holder.backbone(make_input(manifest))
    out = feats[holder.backbone._out_features[0]]
    allowed, _ = tolerance(ref, cfg.MODEL.DLAP.NECK.NODE_TYPE == 'dcn')
    assert (out - ref).abs().max().item() <= allowed


def test_bad_flavor_names_the_config_key():
    cfg = get_cfg()
    add_dlap_config(cfg)
    cfg.MODEL.DLAP.NECK.FLAVOR, cfg.MODEL.BACKBONE.NAME = 'fpn', 'build_dlap_up_backbone'
    with pytest.raises(ValueError, match=r"flavor: unknown DLA-Up flavour 'fpn'; allowed: \['paper', "):
        build_backbone(cfg)
