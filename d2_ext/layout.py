"""detectron2's key layout and config options of our backbones, for the core's converter (``dla-plugins convert --to
detectron2``, published as the ``dla_plugins.hosts`` entry point ``detectron2``). Imports no detectron2.

The builders keep the DLA at ``backbone.dla.`` (``build_dlap_backbone``) or, wrapped by FPN and DLA-Up necks, at
``backbone.bottom_up.dla.``; the DLA-Up of ``build_dlap_up_backbone`` at ``backbone.dla_up.``. A converted file is
``{'model': ..., '__author__': 'dla-plugins', 'matching_heuristics': False}`` (loaded by exact names) without the
BatchNorm counters (one file fits FrozenBN, BN and SyncBN models) and without a DLASeg classifier; a CenterNet ctdet
file keeps its heads at ``heads.*`` (the ``DLAPCenterNet`` meta-architecture's).
"""
import shlex
from typing import Any, Dict, List, Mapping, Optional

from dla_plugins.checkpoint.hosts import HostLayout
from dla_plugins.files import StateDict

__all__ = ['PREFIXES', 'PREFIX_PLAIN', 'PREFIX_NECK', 'MODULE_PARENTS', 'Detectron2Layout', 'LAYOUT']

# Where each builder keeps the DLA.
PREFIXES = {'build_dlap_backbone': 'backbone.dla.', 'build_dlap_fpn_backbone': 'backbone.bottom_up.dla.',
            'build_dlap_retinanet_fpn_backbone': 'backbone.bottom_up.dla.',
            'build_dlap_up_backbone': 'backbone.bottom_up.dla.'}
PREFIX_PLAIN = PREFIXES['build_dlap_backbone']
PREFIX_NECK = PREFIXES['build_dlap_fpn_backbone']
# The modules holding `dla` / `dla_up` in some builder, longest first.
MODULE_PARENTS = tuple(sorted({p[:-len('dla.')] for p in PREFIXES.values()}, key=len, reverse=True))
_ONOFF = {None: 'auto', True: 'on', False: 'off'}


def _builder(network: Mapping[str, Any], prefix: Optional[str]) -> str:
    """The builder that fits: the plain one when its prefix is asked for, else DLA-Up for a whole network, else FPN."""
    if prefix == PREFIX_PLAIN:
        return 'build_dlap_backbone'
    return 'build_dlap_up_backbone' if network else 'build_dlap_fpn_backbone'


class Detectron2Layout(HostLayout):
    """``MODEL.WEIGHTS`` files of the ``build_dlap_*`` backbones; options as ``cfg.merge_from_list`` opts."""

    name = 'detectron2'
    renames = (('backbone.', PREFIX_NECK), ('neck.', 'backbone.dla_up.'), ('heads.', 'heads.'), ('', PREFIX_NECK))
    prefixes = tuple(sorted(set(PREFIXES.values())))
    drop = (('classifier.', ''), ('', 'num_batches_tracked'))
    description = 'MODEL.WEIGHTS .pth'

    def backbone_prefix(self, network: Mapping[str, Any], prefix: Optional[str]) -> str:
        return PREFIXES[_builder(network, prefix)]

    def options(self, variant: str, network: Mapping[str, Any], classes: int, prefix: Optional[str]) -> List[str]:
        builder = _builder(network, prefix)
        norm = 'GN' if network.get('norm_layer') == 'gn' else 'FrozenBN'
        opts = ['MODEL.BACKBONE.NAME', builder, 'MODEL.DLAP.ARCH', variant, 'MODEL.DLAP.NORM', norm]
        if builder != 'build_dlap_up_backbone':
            return opts
        first = network['down_ratio'].bit_length() - 1
        if 'heads' in network:  # a CenterNet ctdet file: the DLAPCenterNet meta-architecture (d2_ext.centernet)
            opts = ['MODEL.META_ARCHITECTURE', 'DLAPCenterNet', *opts, 'MODEL.DLAP.CENTERNET.NUM_CLASSES',
                    str(network['heads']['hm']), 'MODEL.DLAP.CENTERNET.HEAD_CONV', str(network['head_conv']),
                    'MODEL.DLAP.NECK.TOP_BLOCK', '']
        return opts + ['MODEL.DLAP.OUT_FEATURES', '[{}]'.format(','.join(f"'level{i}'" for i in range(first, 6))),
                       'MODEL.DLAP.NECK.FLAVOR', network['flavor'], 'MODEL.DLAP.NECK.NODE_TYPE', network['node_type'],
                       'MODEL.DLAP.NECK.NORM', norm, 'MODEL.DLAP.NECK.OUT_CHANNELS', '0',
                       'MODEL.DLAP.NECK.BIAS', _ONOFF[network.get('bias')],
                       'MODEL.DLAP.NECK.NODE_KERNEL', str(network.get('node_kernel', 3)),
                       'MODEL.DLAP.NECK.FINAL_IDA', _ONOFF[network.get('final_ida')]]

    def format_options(self, options: List[str]) -> str:
        return ' '.join(shlex.quote(o) for o in options)

    def checkpoint(self, state: StateDict, source_layout: str, variant: str) -> Dict[str, Any]:
        return {'model': state, '__author__': 'dla-plugins', 'matching_heuristics': False}

    def cached_checkpoint(self, state: StateDict, source_layout: str, variant: str) -> Dict[str, Any]:
        """For ``dlap://`` names: the DLA at ``dla.*`` (DLA-Up at ``dla_up.*``), matched by name into whichever
        ``build_dlap_*`` backbone loads it (the backbones' load guard keeps the load strict)."""
        stripped = {next(k[len(p):] for p in MODULE_PARENTS + ('',) if k.startswith(p)): v for k, v in state.items()}
        return {'model': stripped, '__author__': 'dla-plugins', 'matching_heuristics': True}


LAYOUT = Detectron2Layout()
