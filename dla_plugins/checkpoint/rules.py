"""Layout rules as data: one :class:`LayoutRule` per checkpoint family, recognised from the keys alone.

A rule says how its family is recognised (``matches`` on the :class:`Evidence` of a state_dict), how its keys are
renamed (neck parts, backbone renames, keys of its own such as a DLASeg classifier) and which model arguments it
implies (``flavor``, ``model_kwargs``). Each family module (``ucbdrive``, ``centernet``, ``mmdet3d``, ``centernet2``)
declares its rules; ``detect`` orders them in one registry and converts generically.
"""
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, Mapping, Optional, Tuple

__all__ = ['Evidence', 'LayoutRule', 'KeyMap', 'NECK_PATTERN', 'LEVEL_PATTERN']

# A DLA-Up key of the reference codebases: ``[neck.|backbone.][dla_up.]ida_<i>.`` or ``ida_up.`` (SMOKE: in
# ``backbone.`` + ``body.``, see smoke.py).
NECK_PATTERN = re.compile(r'^(|neck\.|backbone\.|backbone\.body\.)(?:(?:dla_up\.)?ida_\d+|ida_up)\.')
LEVEL_PATTERN = re.compile(r'(?:base_layer|level[0-5])\.')
KeyMap = Callable[[str], Optional[Tuple[Optional[str], Optional[str]]]]
"""A family's own (non-DLA, non-DLA-Up) key -> (our key, None) to keep it, (None, reason) to skip it, or None."""


@dataclass(frozen=True)
class Evidence:
    """What a rule may look at: the keys, the prefix holding the DLA, the DLA-Up prefix and keys (after it)."""

    keys: Tuple[str, ...]
    backbone_prefix: str
    neck_prefix: Optional[str]
    neck_keys: Tuple[str, ...]
    tops: FrozenSet[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, state: Mapping[str, Any], backbone_prefix: str, neck_prefix: Optional[str]) -> 'Evidence':
        keys = tuple(state)
        neck = tuple(k[len(neck_prefix):] for k in keys if neck_prefix is not None and k.startswith(neck_prefix)
                     and NECK_PATTERN.match(k))
        return cls(keys, backbone_prefix, neck_prefix, neck, frozenset(k.split('.', 1)[0] for k in keys))

    def neck_has(self, pattern: str) -> bool:
        return any(re.search(pattern, k) for k in self.neck_keys)

    def backbone_has(self, pattern: str) -> bool:
        p = self.backbone_prefix
        return any(re.search(pattern, k[len(p):]) for k in self.keys if k.startswith(p))

    def has(self, key: str) -> bool:
        return key in self.keys


@dataclass(frozen=True)
class LayoutRule:
    """One checkpoint family.

    Attributes:
        family: Short name (``report.layout``).
        description: What saved such files.
        matches: Recognition on the :class:`Evidence` (rules are tried in registry order; the first match wins).
        neck_parts: How a DLA-Up module part maps to ours: ``(regex, 'conv:<suffix>' | 'norm:<suffix>')`` pairs.
        neck_lists: The DLA-Up keeps ModuleLists ``projs.<k-1>``/``ups``/``nodes`` (mmdetection3d) instead of
            ``proj_<k>``/``up_<k>``/``node_<k>``.
        flavor: The :class:`~dla_plugins.DLAUp` flavour of its network ('paper' or 'centernet').
        network: Further DLASeg arguments its network implies (e.g. CenterNet2's DLAUP: 1x1 nodes, no final IDA).
        rename_backbone: A key of the DLA (after its prefix) -> ours (e.g. mmcv norm names).
        own_keys: Keys of its own outside the DLA and DLA-Up (see :data:`KeyMap`).
        extra_inputs: Convs on extra inputs (CenterTrack's previous frame / heatmap) inside the DLA: skipped.
        signature: What its keys look like, to name the closest family of an unrecognised file.
        dense: A detection/segmentation checkpoint: other keys are task heads (skipped).
        neck_loads: False for a DLA-Up with no equivalent in :class:`~dla_plugins.DLAUp` (its keys are skipped and
            listed; the file's network is its DLA).
    """

    family: str
    description: str
    matches: Callable[[Evidence], bool]
    neck_parts: Tuple[Tuple[str, str], ...] = ()
    neck_lists: bool = False
    flavor: str = 'centernet'
    network: Mapping[str, Any] = field(default_factory=dict)
    rename_backbone: Optional[Callable[[str], str]] = None
    own_keys: Optional[KeyMap] = None
    extra_inputs: Optional[re.Pattern] = None
    signature: Optional[str] = None
    dense: bool = True
    neck_loads: bool = True

    def describe(self) -> Dict[str, Any]:
        return dict(family=self.family, description=self.description, flavor=self.flavor, dense=self.dense)
