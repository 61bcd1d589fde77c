"""mmseg's key layout and model config of our ``DLA`` backbone and ``DLAUpHead``, for the core's converter
(``dla-plugins convert --to mmseg``, published as the ``dla_plugins.hosts`` entry point ``mmseg``). Imports no mmcv,
mmengine or mmseg.

The DLA lives at ``backbone.body.``, the DLA-Up of ``DLAUpHead`` at ``decode_head.dla_up.`` and DLASeg's classifier at
``decode_head.conv_seg.``. A converted file is ``{'state_dict': ..., 'meta': {...}}`` (mmengine's ``load_from``).
"""
from typing import Any, Dict, Mapping, Optional

from dla_plugins.checkpoint.hosts import HostLayout
from dla_plugins.files import StateDict
from dla_plugins.variants import resolve_variant

__all__ = ['BACKBONE_PREFIX', 'NECK_PREFIX', 'MMSegLayout', 'LAYOUT']

BACKBONE_PREFIX = 'backbone.body.'
NECK_PREFIX = 'decode_head.dla_up.'


class MMSegLayout(HostLayout):
    """``load_from`` files of ``DLA`` + ``DLAUpHead``; options as the ``model`` config dict's parts."""

    name = 'mmseg'
    renames = (('backbone.', BACKBONE_PREFIX), ('neck.', NECK_PREFIX), ('classifier.', 'decode_head.conv_seg.'),
               ('', BACKBONE_PREFIX))
    drop = (('heads.', ''),)  # a CenterNet detector's task heads: mmseg has no place for them
    description = 'load_from .pth'

    def options(self, variant: str, network: Mapping[str, Any], classes: int, prefix: Optional[str]
                ) -> Dict[str, Any]:
        norm_cfg = dict(type='GN', num_groups=32) if network.get('norm_layer') == 'gn' else dict(type='BN')
        first = network['down_ratio'].bit_length() - 1 if network else 2
        levels = list(range(first, 6))
        backbone = dict(type='DLA', arch=variant, out_indices=tuple(levels), output_stride=32, norm_cfg=norm_cfg)
        if not network:
            return dict(backbone=backbone)
        chans = resolve_variant(variant).channels
        head = dict(type='DLAUpHead', in_channels=[chans[i] for i in levels], strides=[2 ** i for i in levels],
                    num_classes=classes or 'YOUR_NUM_CLASSES', flavor=network['flavor'],
                    node_type=network['node_type'], bias=network.get('bias'),
                    node_kernel=network.get('node_kernel', 3), final_ida=network.get('final_ida'), norm_cfg=norm_cfg)
        return dict(backbone=backbone, decode_head=head)

    def format_options(self, options: Dict[str, Any]) -> str:
        return 'model = dict(\n' + ''.join(f'    {k}={v!r},\n' for k, v in options.items()) + ')'

    def checkpoint(self, state: StateDict, source_layout: str, variant: str) -> Dict[str, Any]:
        return {'state_dict': state, 'meta': {'source_layout': source_layout, 'variant': variant}}


LAYOUT = MMSegLayout()
