"""The known DLA weight files (data). Every location and hash is taken from the publishing project's own code, README,
model zoo or config; ``cite`` says where. A hash is recorded only where one is published; every other file is
verified against the sha256 recorded at its first download. docs/checkpoints.md ("Weights by name") has the table
with the citations in full."""
import dataclasses
from typing import Dict, Optional, Tuple

from .entry import Source, WeightEntry

__all__ = ['TABLE']

# ---- citations (repository@commit path, or the page) ----------------------------------------------------------------
TIMM_CFG = 'huggingface/pytorch-image-models@aa4b585 timm/models/dla.py default_cfgs (hf_hub_id="timm/")'
TIMM_RELEASE_CITE = ('huggingface/pytorch-image-models@e11efa8 timm/models/dla.py (dla169 fixed in @73049dc); '
                     'name = <model>-<sha256[:8]> (clean_checkpoint.py; timm set_pretrained_check_hash)')
TIMM_RES2NET_CITE = 'huggingface/pytorch-image-models@adbf770 timm/models/dla.py (res2net release assets)'
UCB_CITE = 'ucbdrive/dla@d477ceb dla.py WEB_ROOT + dataset.py imagenet.model_hash'
TRICKS_CITE = 'facebookresearch/omni3d@778bd02 cubercnn/modeling/backbone/dla.py (name dla34+tricks, hash 24a49e58)'
OMZ_DLA34 = 'openvinotoolkit/open_model_zoo@0475b7c models/public/dla-34/model.yml (size, sha384, mirror)'
OMZ_DLAV0 = 'openvinotoolkit/open_model_zoo@1db2046 models/public/ctdet_coco_dlav0_512/model.yml (size, sha384)'
CENTERNET_ZOO = 'xingyizhou/CenterNet@4c50fd3 readme/MODEL_ZOO.md'
CENTERNET_OLD = 'xingyizhou/CenterNet@f16ef63 readme/MODEL_ZOO.md (before the Nov 2022 link update)'
CENTERTRACK_ZOO = 'xingyizhou/CenterTrack@e4e7534 readme/MODEL_ZOO.md'
CENTERTRACK_OLD = 'xingyizhou/CenterTrack@04fe46c readme/MODEL_ZOO.md (before the Nov 2022 link update)'
FAIRMOT_README = 'ifzhang/FairMOT@4aa6297 README.md'
CENTERNET2_ZOO = 'xingyizhou/CenterNet2@bfc8b72 docs/MODEL_ZOO.md'
CENTERNET2_OLD = 'xingyizhou/CenterNet2@d35d394 docs/MODEL_ZOO.md (before the Nov 2022 link update)'
MMDET3D_SMOKE = ('open-mmlab/mmdetection3d@fe25f7a configs/smoke/metafile.yml; name = <stem>-<sha256[:8]> '
                 '(tools/model_converters/publish_model.py)')
MMDET3D_MONOFLEX = 'open-mmlab/mmdetection3d@fe25f7a configs/monoflex/metafile.yml'
OMNI3D_ZOO = 'facebookresearch/omni3d@778bd02 MODEL_ZOO.md'


# the revision of the hub page each hash was read from (the file's "Git LFS details"; main where the page was main)
_HF_PAGE_REV = {('dla46_c', 'model.safetensors'): '293e663aa8599e26360789bffc30ba7dfd9d16ad',
                ('dla46_c', 'pytorch_model.bin'): '293e663aa8599e26360789bffc30ba7dfd9d16ad',
                ('dla46x_c', 'pytorch_model.bin'): '8a71a8e4a62ac7d2df76f8fa6ec9eb060790c836',
                ('dla102', 'model.safetensors'): 'eb213ea9405e9434895facd3656a48b7ded99092',
                ('dla169', 'pytorch_model.bin'): '492a94c1481c02dcc647bd261d86ce964bdf38a6'}


def _hf_page(variant: str, file: str) -> str:
    rev = _HF_PAGE_REV.get((variant, file), 'main')
    return f'https://huggingface.co/timm/{variant}.in1k/blob/{rev}/{file} (Git LFS details: SHA256)'


# ---- ImageNet classifiers -------------------------------------------------------------------------------------------
# variant -> (timm GitHub release file, ucbdrive hash, HF model.safetensors sha256, HF pytorch_model.bin sha256);
# the HF hashes are the LFS SHA256 the hub shows on each file's page, where that page could be read.
_IMAGENET: Dict[str, Tuple[str, Optional[str], Optional[str], Optional[str]]] = {
    'dla34': ('dla34-2b83ff04.pth', 'ba72cf86',
              'a7ff2ae9a4601482cbf2358cbd89a0da2e264ed1fa9ecb43788bc2daf1038701', None),
    'dla46_c': ('dla46_c-9b68d685.pth', '2bfd52c3',
                'e1d63d8a64fe92b61f167ecb2d2379833c429b452fe685a30c03748c2f8dcb1c',
                '2cbc0634facd48da71becdcc4fe671077f22810d0d80eb03d7859d4310605fd8'),
    'dla46x_c': ('dla46x_c-6bc5b5c8.pth', 'd761bae7', None,
                 '88d4c27cd3d13cc1db1b79ea2a16816565b9a5a324e76094e02a789c7c1c674d'),
    'dla60x_c': ('dla60x_c-a38e054a.pth', 'b870c45c', None, None),
    'dla60': ('dla60-9e91bd4d.pth', '24839fc4', None, None),
    'dla60x': ('dla60x-6818f6bb.pth', 'd15cacda',
               'dcc75a67cbcd166b6b63b83fdf5bbd868b3dd9629519b8759308fbb40bf4a18c',
               'a097b190853705b13dddcb5cfd52c55f75b6ecdd65a165b05662394e99531ad2'),
    'dla102': ('dla102-21f57b54.pth', 'd94d9790',
               '8715398fe7d645f7170847d31ed14ebf9f225d0cef251f570d280ac9e1ddfb16', None),
    'dla102x': ('dla102x-7ec0aa2a.pth', 'ad62be81', None, None),
    'dla102x2': ('dla102x2-ac4239c4.pth', '262837b6', None, None),
    'dla169': ('dla169-7c767967.pth', '0914e092',
               '1594d3db34d97e74c5f0edd5805dbeffc4a175991de058bbe5bbcd5244141339',
               'bf94cecf8fdce7bd8d9a87caf77fa732c9a3e47e574c8ffdf62a7b9215ae82e0'),
    'dla60_res2net': ('res2net_dla60_4s-d88db7f9.pth', None, None, None),
    'dla60_res2next': ('res2next_dla60_4s-d327927b.pth', None, None, None),
}
_OMZ_DLA34 = dict(size=63228658, sha384='38c035736538b6c67f2539bf1ca1cc1349c3691f41321bd58de9e97aa9eb83ea'
                                        '6f52c4aeef7c4cd54c92b6f8c3f3e89b')


def _imagenet_sources(variant: str) -> Dict[str, Tuple[Source, ...]]:
    """The hub, GitHub-release and original sources of one ImageNet classifier (same weights: timm's tags pointed
    at the dl.yf.io files until timm re-saved and re-hashed them as release assets in 2022)."""
    release, ucb_hash, hf_st, hf_bin = _IMAGENET[variant]
    repo = f'timm/{variant}.in1k'
    hf = (Source('hf', repo, 'model.safetensors', sha256=hf_st, cite=_hf_page(variant, 'model.safetensors') if hf_st
                 else TIMM_CFG),
          Source('hf', repo, 'pytorch_model.bin', sha256=hf_bin, cite=_hf_page(variant, 'pytorch_model.bin') if hf_bin
                 else TIMM_CFG))
    tag = 'v0.1-res2net' if 'res2' in variant else 'v0.1-weights'
    github = (Source('url', f'https://github.com/rwightman/pytorch-image-models/releases/download/{tag}/{release}',
                     release, sha256=release.rsplit('-', 1)[1].split('.')[0],
                     cite=TIMM_RES2NET_CITE if 'res2' in variant else TIMM_RELEASE_CITE),)
    original: Tuple[Source, ...] = ()
    if ucb_hash:
        file = f'{variant}-{ucb_hash}.pth'
        pins = _OMZ_DLA34 if variant == 'dla34' else {}
        original = (Source('url', f'http://dl.yf.io/dla/models/imagenet/{file}', file, family='ucbdrive',
                           cite=f'{UCB_CITE}; {OMZ_DLA34}' if pins else UCB_CITE, **pins),)
        if variant == 'dla34':
            original += (Source('url', 'https://storage.openvinotoolkit.org/repositories/open_model_zoo/public/2022.1/'
                                       f'dla-34/{file}', file, family='ucbdrive', cite=OMZ_DLA34, **_OMZ_DLA34),)
    return dict(hf=hf, github=github, original=original)


def _imagenet_entries() -> Tuple[WeightEntry, ...]:
    out = []
    for variant in _IMAGENET:
        s = _imagenet_sources(variant)
        out.append(WeightEntry(
            f'{variant}.in1k', variant, 'timm', s['hf'] + s['github'] + s['original'], 'create_dla',
            dict(num_classes=1000), f"timm's {variant}.in1k ImageNet-1k classifier"))
        if s['original']:
            out.append(WeightEntry(
                f'{variant}.ucbdrive', variant, 'ucbdrive', s['original'] + s['github'] + s['hf'][:1], 'create_dla',
                dict(num_classes=1000), f"ucbdrive/dla's original {variant} ImageNet file (dl.yf.io) first; then "
                'the re-saved copies of the same weights'))
    for variant, file in (('dla34', 'dla34+tricks-24a49e58.pth'), ('dla60', 'dla60+tricks-14488826.pth'),
                          ('dla102', 'dla102+tricks-27a30eac.pth')):
        out.append(WeightEntry(
            f'{variant}+tricks', variant, 'ucbdrive',
            (Source('url', f'http://dl.yf.io/dla/models/imagenet/{file}', file, cite=TRICKS_CITE),), 'create_dla',
            dict(num_classes=1000), f'ucbdrive {variant} trained with extra tricks (used by omni3d Cube R-CNN)',
            note='one source: only dl.yf.io publishes it (omni3d and dla-afa load it from there); no copy is known'))
    return tuple(out)


# ---- whole networks -------------------------------------------------------------------------------------------------
_CENTERNET_NET = dict(down_ratio=4, output_stride=32, flavor='centernet', node_type='dcn', num_classes=0, bias=True)
_FAMILY_NET = {
    'centernet': _CENTERNET_NET, 'fairmot': _CENTERNET_NET, 'centertrack': _CENTERNET_NET,
    'centernet2-dlaseg': _CENTERNET_NET,
    'centernet-dlav0': dict(down_ratio=4, output_stride=32, flavor='paper', node_type='conv', num_classes=0),
    'mmdet3d': dict(_CENTERNET_NET, norm_layer='gn'),
}
DRIVE_ONLY = ('Google Drive only: the authors publish no other copy; the second id is the one their model zoo gave '
              'before the Nov 2022 link update (may be gone)')


def _net(name: str, family: str, sources: Tuple[Source, ...], description: str, note: str = '',
         variant: str = 'dla34', **kwargs) -> WeightEntry:
    """A detection/tracking checkpoint: DLASeg(**family kwargs), or a DLA for bottom-up-only families."""
    net = dict(_FAMILY_NET[family], **kwargs) if family in _FAMILY_NET else None
    return WeightEntry(name, variant, family, sources, 'DLASeg' if net else 'create_dla', net or dict(num_classes=0),
                       description, note)


def _drive(file: str, ids: Tuple[str, ...], cites: Tuple[str, ...]) -> Tuple[Source, ...]:
    return tuple(Source('gdrive', i, file, cite=c) for i, c in zip(ids, cites))


def _centernet_entries() -> Tuple[WeightEntry, ...]:
    zoo = {  # CenterNet experiment -> (current Drive id, pre-2022 Drive id); all pose_dla_dcn (--arch dla_34)
        'ctdet_coco_dla_1x': ('1xqFsdA3DANMq1MfnXG8n7nQPe4AfXTHv', '1r89_KNXyDyvUp8NggduG9uKQTMU2DsK_'),
        'ctdet_coco_dla_2x': ('18Q3fzzAsha_3Qid6mn4jcIFPeOGUaj1d', '1pl_-ael8wERdUREEnaIfqOV_VF2bEVRT'),
        'ctdet_pascal_dla_384': ('19J7WoUZKYiSEU7vrhZInz5C2m0-9zmC1', '1IC3FZkxAQHm2rxoIGmS4YluYpZxwYkJf'),
        'ctdet_pascal_dla_512': ('1Iqqr_VLtG8T3tUzy-EuMaeuCtFuv6pEU', '1jIfK9EyqzNcupxGsp3YRnEiewrIG4_Ma'),
        'multi_pose_dla_1x': ('1WKqVdkIew43SxLTSxi81a-_f4Q9v2Fx5', '1VeiRtuXfCbmhQNGV-XWL6elUzpuWN-4K'),
        'multi_pose_dla_3x': ('1mC2PAQT_RuHi_9ZMZgkt4rg7BSY2_Lkd', '1PO1Ax_GDtjiemEmDVD7oPWwqQkUu28PI'),
        'ddd_3dop': ('1LrAzVJqlZECVuyr_NJI_4xd88mA1fL5b', '1znsM6E-aVTkATreDuUVxoU0ajL1az8rz'),
        'ddd_sub': ('1ZUsUqrM_yTjxaJuDBxm0WTKXj1snVuvP', '15XuJxTxCBnA8O37M_ghjppnWmVnjC0Hp'),
    }
    cites = (CENTERNET_ZOO, CENTERNET_OLD)
    out = [_net(f'centernet/{k}', 'centernet', _drive(f'{k}.pth', ids, cites), f'CenterNet {k} (DLA-34, DCN)',
                DRIVE_ONLY) for k, ids in zoo.items()]
    # ctdet_coco_dla_2x: FairMOT's README links the pre-2022 id too (its COCO-pretrained starting point)
    v0 = 'ctdet_coco_dlav0_1x.pth'
    out.append(_net('centernet/ctdet_coco_dlav0_1x', 'centernet-dlav0', (
        Source('url', f'https://storage.openvinotoolkit.org/repositories/open_model_zoo/public/2022.1/'
                      f'ctdet_coco_dlav0_512/{v0}', v0, size=221889662,
               sha384='74565ead2d6c42738f90c0c23abaca04048c9156fdd548130a6b9df94786a6d964b8d6f548a0a44208885243314eea64',
               cite=OMZ_DLAV0),
        Source('gdrive', '18yBxWOlhTo32_swSug_HM4q3BeWgxp_N', v0, size=221889662,
               sha384='74565ead2d6c42738f90c0c23abaca04048c9156fdd548130a6b9df94786a6d964b8d6f548a0a44208885243314eea64',
               cite=f'{OMZ_DLAV0} original_source')),
        'CenterNet ctdet_coco_dlav0_1x (DLA-34, paper DLA-Up)'))
    return tuple(_ctdet(e) for e in out)


def _ctdet(entry: WeightEntry) -> WeightEntry:
    """A CenterNet ``ctdet_*`` file builds the whole detector, heads included (COCO: 80 classes, Pascal: 20)."""
    if not entry.name.startswith('centernet/ctdet_'):
        return entry
    kwargs = {k: v for k, v in entry.model_kwargs.items() if k != 'num_classes'}
    heads = {'hm': 20 if '_pascal_' in entry.name else 80, 'wh': 2, 'reg': 2}
    return dataclasses.replace(entry, builds='CenterNet', model_kwargs=dict(kwargs, heads=heads))


def _fairmot_entries() -> Tuple[WeightEntry, ...]:
    sp = 'https://microsoftapc-my.sharepoint.com/:u:/g/personal/v-yifzha_microsoft_com/'
    rows = {  # file -> (Drive id, Baidu link + code, OneDrive link or None); all --arch dla_34 (pose_dla_dcn)
        'fairmot_dla34': ('1iqRQjsG9BawIl8SlFomMg5iwkb6nqSpi', ('https://pan.baidu.com/s/1H1Zp8wrTKDk20_DSPAeEkg',
                                                                 'uouv'),
                          sp + 'EWHN_RQA08BDoEce_qFW-ogBNUsb0jnxG3pNS3DJ7I8NmQ?e=p0Pul1'),
        'crowdhuman_dla34': ('1SFOhg_vos_xSYHLMTDGFVZBYjo8cr2fG', ('https://pan.baidu.com/s/1JZMCVDyQnQCa5veO73YaMw',
                                                                   'ggzx'),
                             sp + 'EUsj0hkTNuhKkj9bo9kE7ZsBpmHvqDz6DylPQPhm94Y08w?e=3OF4XN'),
        'mix_mot17_half_dla34': ('1dJDGSa6-FMq33XY-cOd_nYxuilv30YDM',
                                 ('https://pan.baidu.com/s/1RQD8ik1labWuwd8jJ-0ukQ', 'iifa'),
                                 sp + 'ESh1SlUvZudKgUX4A8E3yksBhfRHIf2AsKaaPJ-v_5lVAw?e=NB6UHR'),
        'mot20_fairmot': ('1HVzDTrYSSZiVqExqG9rou3zZXX1-GGQn', ('https://pan.baidu.com/s/1bpMtu972ZszsBx4TzIT_CA',
                                                                'jmce'), None),
    }
    out = []
    for stem, (drive, (baidu, code), onedrive) in rows.items():
        file = f'{stem}.pth'
        sources = (Source('gdrive', drive, file, cite=FAIRMOT_README),
                   Source('manual', baidu, file, cite=FAIRMOT_README, note=f'Baidu, access code {code}'))
        if onedrive:
            sources += (Source('manual', onedrive, file, cite=FAIRMOT_README, note='OneDrive share page'),)
        out.append(_net(f'fairmot/{stem}', 'fairmot', sources, f'FairMOT {stem} (DLA-34, DCN, re-ID head)',
                        'one automatic source (Google Drive); the Baidu (access code) and OneDrive copies the README '
                        'links need a browser, so they are listed for manual download'))
    return tuple(out)


def _centertrack_entries() -> Tuple[WeightEntry, ...]:
    zoo = {  # experiment -> (current Drive id, pre-2022 Drive id); all `tracking` with --arch dla_34 (DCN)
        'coco_tracking': ('11DEfWa0TKYzNqY3CXR51WVvjMb4oRl08', '1tJCEJmdtYIh8VuN8CClGNws3YO7QGd40'),
        'crowdhuman': ('1SD31FLwbXArcX3LXnRCqh6RF-q38nO7f', '1rIVl-jSG6oiBdiJmCvIAUOeasT7YllRZ'),
        'mot17_fulltrain': ('1JYqO_IEoHpd7JEzZRXZSVesnEL4e-tnf', '1h_8Ts11rf0GQ4_n6FgmCeBuFcWrRjJfa'),
        'mot17_half': ('1rJ0fzRcpRQPjaN17lcqfKgsz-wJRifHh', '1sf1bWJ1LutwQ_wp176nd2Y3HII9WeFf0'),
        'kitti_fulltrain': ('13oUEpeZ8bVQ6z7A6SH88de4SwLgh_kMB', '1kBX4AgQj7R7HvgMdbgBcwvIac-IFp95h'),
        'nuScenes_3Dtracking': ('1gPQFzqneDtT_PjJRRuyskRsNTRHXovw1', '1e8zR1m1QMJne-Tjp-2iY_o81hn2CiQRt'),
    }
    cites = (CENTERTRACK_ZOO, CENTERTRACK_OLD)
    return tuple(_net(f'centertrack/{k}', 'centertrack', _drive(f'{k}.pth', ids, cites),
                      f'CenterTrack {k} (DLA-34, DCN; extra input convs skipped)', DRIVE_ONLY)
                 for k, ids in zoo.items())


def _centernet2_entries() -> Tuple[WeightEntry, ...]:
    zoo = {  # model -> (family, current Drive id, pre-2022 Drive id); family from the config's BACKBONE.NAME
        'CenterNet-S4_DLA_8x': ('centernet2-dlaseg', '1AVfs9OoLePk_sqTPvqdRi1cXmO2cD0W_',
                                '1lNBhVHnZAEBRD66MFaHjm5Ij6Z4KYrJq'),
        'CenterNet2_DLA-BiFPN-P3_4x': ('centernet2-bifpn', '1UGrnOE0W8Tgu6ffcCOQEbeUgThtDkbuQ',
                                       '12GUNlDW9RmOs40UEMSiiUsk5QK_lpGsE'),
        'CenterNet2_DLA-BiFPN-P3_24x': ('centernet2-bifpn', '17osgvr_Zhp9SS2uMa_YLiKwkKJIDtwPZ',
                                        '15ZES1ySxubDPzKsHPA7pYg8o_Vwmf-Mb'),
        'CenterNet2_DLA-BiFPN-P5_640_24x_ST': ('centernet2-fpn', '1pGXpnHhvi66my_p5dASTnTjvaaj0FEvE',
                                               '1qsHp2HrM1u8WrtBzF5S0oCoLMz-B40wk'),
    }
    cites = (CENTERNET2_ZOO, CENTERNET2_OLD)
    notes = {'CenterNet2_DLA-BiFPN-P5_640_24x_ST': ' Its config is not in the repository; the family is that of '
                                                   'the P5_640 configs (build_p37_dla_bifpn_backbone) and is '
                                                   're-detected from the keys at load.'}
    return tuple(_net(f'centernet2/{k}', fam, _drive(f'{k}.pth', (new, old), cites), f'CenterNet2 {k} (DLA-34)',
                      DRIVE_ONLY + '.' + notes.get(k, ''))
                 for k, (fam, new, old) in zoo.items())


def _mmdet3d_entries() -> Tuple[WeightEntry, ...]:
    smoke = 'smoke_dla34_pytorch_dlaneck_gn-all_8x4_6x_kitti-mono3d_20210929_015553-d46d9bb0.pth'
    flex = 'monoflex_dla34_pytorch_dlaneck_gn-all_2x4_6x_kitti-mono3d_20211228_027553-d46d9bb0.pth'
    base = 'https://download.openmmlab.com/mmdetection3d/v0.1.0_models'
    return (
        _net('mmdet3d/smoke_dla34_kitti', 'mmdet3d',
             (Source('url', f'{base}/smoke/{smoke}', smoke, sha256='d46d9bb0', cite=MMDET3D_SMOKE),),
             'mmdetection3d SMOKE (DLANet + DLANeck, GN, DCN) on KITTI mono3d',
             'one source: OpenMMLab publishes it on download.openmmlab.com only'),
        _net('mmdet3d/monoflex_dla34_kitti', 'mmdet3d',
             (Source('url', f'{base}/monoflex/{flex}', flex, cite=MMDET3D_MONOFLEX),),
             'mmdetection3d MonoFlex (DLANet + DLANeck, GN) on KITTI mono3d',
             'the only published URL has answered 404 since 2022 (open-mmlab/mmdetection3d#1695, #1747) and no '
             'config was released (#2093); kept so a DLA_PLUGINS_MIRROR copy can serve it. Its -d46d9bb0 suffix '
             "equals SMOKE's, so it is not this file's hash and is not pinned. Network: DLANeck's defaults (GN, "
             'DCN) as the file name says; re-detected from the keys at load'),
    )


def _omni3d_entries() -> Tuple[WeightEntry, ...]:
    out = []
    for split in ('omni3d', 'indoor', 'outdoor'):
        suffix = '' if split == 'omni3d' else f'_{split}'
        out.append(_net(f'omni3d/cubercnn_dla34_fpn{suffix}', 'centernet2-fpn', (
            Source('url', f'https://dl.fbaipublicfiles.com/cubercnn/{split}/cubercnn_DLA34_FPN.pth',
                   'cubercnn_DLA34_FPN.pth', cite=OMNI3D_ZOO),),
            f'omni3d Cube R-CNN DLA-34 FPN ({split}); the DLA under backbone.bottom_up',
            'one source: Meta publishes it on dl.fbaipublicfiles.com only'))
    return tuple(out)


TABLE: Tuple[WeightEntry, ...] = (_imagenet_entries() + _centernet_entries() + _fairmot_entries()
                                  + _centertrack_entries() + _centernet2_entries() + _mmdet3d_entries()
                                  + _omni3d_entries())
