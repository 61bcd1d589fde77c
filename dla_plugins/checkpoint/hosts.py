"""Host layouts: how a host framework keeps our model's tensors and what builds the model that loads them.

The core names no host. Each adapter describes its host once, in a module that imports no host framework
(``d2_ext.layout``, ``mmseg_ext.layout``), as a :class:`HostLayout` subclass, and publishes it as an entry point of the
group ``dla_plugins.hosts`` (pyproject.toml); :func:`host_layout` loads it by name on first use, so
``dla-plugins convert --to NAME`` finds every installed adapter. :func:`register_host` adds one by hand.
"""
from importlib.metadata import entry_points
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch

from ..files import StateDict
from .rules import LEVEL_PATTERN

__all__ = ['ENTRY_POINT_GROUP', 'HostLayout', 'HostKeys', 'register_host', 'host_layout', 'host_names', 'match_host']

ENTRY_POINT_GROUP = 'dla_plugins.hosts'
_HOSTS: Dict[str, 'HostLayout'] = {}


class HostLayout:
    """One host's key layout and model options (subclass it in the adapter; the core calls these methods).

    Attributes:
        name: The ``--to`` name (``'detectron2'``).
        renames: ``(our prefix, host prefix)`` pairs, first match wins; ``''`` is a plain DLA's top level.
        prefixes: The ``prefix=`` values the host accepts (alternative places of the DLA); empty: none.
        drop: Key patterns (prefix + suffix) of our model the host file omits besides a plain DLA's ``fc``:
            ``('classifier.', '')`` drops DLASeg's classifier, ``('', 'num_batches_tracked')`` BN counters.
        description: What the file is, for ``--help``.
    """

    name: str = ''
    renames: Tuple[Tuple[str, str], ...] = ()
    prefixes: Tuple[str, ...] = ()
    drop: Tuple[Tuple[str, str], ...] = ()
    description: str = ''

    def backbone_prefix(self, network: Mapping[str, Any], prefix: Optional[str]) -> str:
        """Where the DLA goes for a network (``{}``: a plain DLA) and the requested ``prefix``."""
        return prefix or self.renames[0][1]

    def options(self, variant: str, network: Mapping[str, Any], classes: int, prefix: Optional[str]) -> Any:
        """What builds the host model that loads the converted file (a config dict, an opts list ...)."""
        raise NotImplementedError

    def format_options(self, options: Any) -> str:
        """``options`` as the user types them."""
        raise NotImplementedError

    def checkpoint(self, state: StateDict, source_layout: str, variant: str) -> Any:
        """The object the host's loader reads from the written file."""
        raise NotImplementedError

    def cached_checkpoint(self, state: StateDict, source_layout: str, variant: str) -> Any:
        """What the cached conversion of a registry file holds (a host's ``dlap://`` path loads it): by default the
        same as :meth:`checkpoint`."""
        return self.checkpoint(state, source_layout, variant)

    def keys_from_host(self, keys: Sequence[str]) -> Optional[Dict[str, str]]:
        """Host key -> our key for the keys of a file this host wrote (its own checkpoints, e.g. after training), or
        None when no DLA sits under this host's prefixes. Keys of the host's other modules (heads, FPN) are left out,
        except those it renames from ours (a CenterNet detector's ``heads.``)."""
        where: Dict[str, List[str]] = {}
        for ours, theirs in self.renames:
            where.setdefault(ours or 'backbone.', []).append(theirs)
        dla = sorted(set(where.get('backbone.', [])) | set(self.prefixes), key=len, reverse=True)
        found = [p for p in dla if any(k.startswith(p) and LEVEL_PATTERN.match(k[len(p):]) for k in keys)]
        if not found:
            return None
        seg = any(k.startswith(n) for n in where.get('neck.', ()) for k in keys)
        targets = [(found[0], 'backbone.' if seg else '')]
        if seg:
            targets += [(t, ours) for ours in ('neck.', 'classifier.', 'heads.') for t in where.get(ours, ())]
        return {k: ours + k[len(theirs):] for k in keys for theirs, ours in targets
                if k.startswith(theirs)}

    def to_host(self, state: Mapping[str, torch.Tensor], network: Mapping[str, Any], prefix: Optional[str],
                dropped: Optional[List[str]] = None) -> StateDict:
        """Rename a DLA/DLASeg state_dict by :attr:`renames`, the DLA at :meth:`backbone_prefix`.

        A plain DLA's ImageNet classifier (``fc``) and keys matching a :attr:`drop` pattern are left out; those that
        are not BatchNorm counters are appended to ``dropped`` when it is given.
        """
        dla_prefix, default = self.backbone_prefix(network, prefix), self.renames[0][1]
        seg = any(k.startswith('neck.') for k in state)
        out: StateDict = {}
        for k, v in state.items():
            if (not seg and k.startswith('fc.')) or any(k.startswith(p) and k.endswith(s) for p, s in self.drop):
                if dropped is not None and not k.endswith('num_batches_tracked'):
                    dropped.append(k)
                continue
            for ours, theirs in self.renames:
                if k.startswith(ours) and (ours or not seg):
                    out[(dla_prefix if theirs == default else theirs) + k[len(ours):]] = v.detach().clone()
                    break
        return out


class HostKeys(NamedTuple):
    """A file written by host ``host``: which of its keys are ours, and under which name."""

    host: str
    mapping: Dict[str, str]

    def rename(self, state: Mapping[str, torch.Tensor]) -> StateDict:
        return {self.mapping[k]: v for k, v in state.items() if k in self.mapping}

    def skipped(self, state: Mapping[str, torch.Tensor]) -> Dict[str, str]:
        return {k: f'not part of the DLA or DLA-Up ({self.host} neck or head)' for k in state if k not in self.mapping}


def match_host(keys: Sequence[str]) -> Optional[HostKeys]:
    """The first host layout whose prefixes hold a DLA in ``keys`` (a checkpoint a host wrote), or None."""
    for name in host_names():
        mapping = host_layout(name).keys_from_host(keys)
        if mapping:
            return HostKeys(name, mapping)
    return None


def register_host(layout: HostLayout) -> HostLayout:
    """Add ``layout`` under ``layout.name`` (replacing one of that name). Returns it."""
    if not layout.name or layout.name == 'core':
        raise ValueError(f"layout.name: must be a non-empty name other than 'core', got {layout.name!r}")
    _HOSTS[layout.name] = layout
    return layout


def _entry_points() -> Dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def host_names() -> List[str]:
    """Every host name: registered by hand or published as a ``dla_plugins.hosts`` entry point, sorted."""
    return sorted(set(_HOSTS) | set(_entry_points()))


def host_layout(name: str) -> HostLayout:
    """The :class:`HostLayout` called ``name`` (an entry point is loaded on first use).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in _HOSTS:
        ep = _entry_points().get(name)
        if ep is None:
            raise ValueError(f'target: unknown target {name!r}; allowed: {["core"] + host_names()}')
        register_host(ep.load())
    return _HOSTS[name]
