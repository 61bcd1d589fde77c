"""DLA in timm's registry: pretrained cfgs, the build function and one ``@register_model`` entrypoint per variant.

One explicit entrypoint function per variant of :data:`dla_plugins.VARIANTS` (``def dla34(pretrained=False,
**kwargs)`` ...; the build function reads the variant table) is registered on import under its timm name with timm's
public ``register_model``, which replaces timm's built-in entry and its pretrained cfgs; timm's "Overwriting ... in
registry" warning is silenced for exactly these names (the replacement is deliberate). Variants timm ships keep timm's
pretrained tags and cfgs exactly (``dla60x.in1k`` on hub id ``timm/dla60x.in1k``); variants timm lacks
(``dla46_m``) are registered without weights.
"""
import logging
import re
import warnings
from functools import partial
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, is_model, register_model, resolve_pretrained_cfg

from dla_plugins import DLA, VARIANTS, DLAVariant, create_dla
from dla_plugins.checkpoint import prepare_state_dict
from dla_plugins.checkpoint.load import note_weights

__all__ = ['create_timm_dla', 'checkpoint_filter_fn', 'default_cfgs', 'REGISTERED', 'REPLACED', 'FEATURE_OUT_INDICES']

_logger = logging.getLogger(__name__)

# timm's DLA returns levels 1..5 (strides 2..32) from features_only by default; so do we.
FEATURE_OUT_INDICES = (1, 2, 3, 4, 5)
# Licences of timm's ImageNet weights where they differ from the code's BSD-3-Clause.
_WEIGHT_LICENSES = {'dla60_res2net': 'unknown', 'dla60_res2next': 'unknown'}


def _build_dla(variant: str, *, device: Optional[Any] = None, dtype: Optional[torch.dtype] = None,
               bn_momentum: Optional[float] = None, bn_eps: Optional[float] = None, **kwargs: Any) -> DLA:
    """Translate timm's model kwargs into :func:`dla_plugins.create_dla` arguments."""
    if bn_momentum is not None or bn_eps is not None:
        if kwargs.get('norm_layer') is not None:
            raise ValueError('bn_momentum/bn_eps: cannot be combined with norm_layer; set them on the norm layer')
        bn_args = {k: v for k, v in (('momentum', bn_momentum), ('eps', bn_eps)) if v is not None}
        kwargs['norm_layer'] = partial(nn.BatchNorm2d, **bn_args)
    model = create_dla(variant, **kwargs)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], model: nn.Module, weights: Optional[str] = None
                         ) -> Dict[str, torch.Tensor]:
    """Pretrained-weight filter: any recognised layout (timm, ucbdrive, the backbone of a CenterNet/FairMOT/
    CenterTrack/mmdetection3d/CenterNet2 file) converted by the core's rules into exactly the model's keys.

    timm loads non-strictly whenever ``num_classes`` differs from the pretrained cfg, and would then train from random
    weights without saying so if nothing matched. So every tensor of the model except its classifier must come from
    the file, or this raises :class:`~dla_plugins.CheckpointError` listing every missing, unexpected and mis-shaped
    key; a classifier of another size (or none, as in detection checkpoints) stays freshly initialised. ``weights``
    names the registry file it came from (the logged line then says its source and hash status).
    """
    state, report = prepare_state_dict(model, dict(state_dict), classifier='if_mismatched', defer_in_chans=True)
    if weights is not None:
        note_weights(report, weights, model)
        _logger.info('%s', report.weights)
        return state
    _logger.info('pretrained DLA (%s layout): %d tensors loaded, %d skipped%s', report.layout, len(state),
                 len(report.skipped), '; classifier left freshly initialised' if report.dropped_classifier else '')
    return state


def create_timm_dla(variant: str, pretrained: bool = False, **kwargs: Any) -> DLA:
    """Build DLA ``variant`` through timm's ``build_model_with_cfg`` (pretrained cfgs, strict loading, features).

    Accepts everything ``timm.create_model`` passes: ``num_classes``, ``in_chans``, ``global_pool``, ``drop_rate``,
    ``output_stride`` (32/16/8), ``norm_layer``, ``bn_momentum``/``bn_eps``, ``device``/``dtype``,
    ``features_only`` with ``out_indices`` (default levels 1-5) and ``feature_cls``, ``pretrained_cfg(_overlay)``.

    ``pretrained=True`` with a tag of the weights registry (``dla34.in1k``: every tag timm has) and no file or
    state_dict in the cfg fetches through :func:`dla_plugins.weights.fetch`: timm's hub file first, then its fallback
    sources (timm's GitHub release, the original host, public mirrors, ``$DLA_PLUGINS_MIRROR`` before all), verified.
    """
    weights = _registry_weights(variant, kwargs) if pretrained else None
    return build_model_with_cfg(
        partial(_build_dla, variant),
        variant,
        pretrained,
        pretrained_strict=True,
        pretrained_filter_fn=partial(checkpoint_filter_fn, weights=weights),
        feature_cfg=dict(out_indices=FEATURE_OUT_INDICES, flatten_sequential=False),
        **kwargs,
    )


_OWN_SOURCE_KEYS = {'file', 'state_dict', 'url', 'hf_hub_id', 'hf_hub_filename', 'source'}


def _registry_weights(variant: str, kwargs: Dict[str, Any]) -> Optional[str]:
    """Fetch the registry file of the resolved pretrained cfg (``<architecture>.<tag>``) into ``kwargs``'s overlay
    as ``file``; returns its name, or None when the caller gives a cfg of their own or overlays a location (file,
    state_dict, url, hub id) or the registry has no such file (timm's own loading then proceeds)."""
    from dla_plugins import weights

    overlay = kwargs.get('pretrained_cfg_overlay') or {}
    if not isinstance(kwargs.get('pretrained_cfg'), (str, type(None))) or set(overlay) & _OWN_SOURCE_KEYS:
        return None  # the caller named the weights' location: timm loads it as given
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.get('pretrained_cfg'), pretrained_cfg_overlay=overlay)
    name = f'{cfg.architecture}.{cfg.tag}'
    if cfg.file or cfg.state_dict or cfg.source or name not in weights.names():
        return None
    kwargs['pretrained_cfg_overlay'] = {**(kwargs.get('pretrained_cfg_overlay') or {}), 'file': weights.fetch(name)}
    return name


def _cfg(**kwargs: Any) -> Dict[str, Any]:
    return {
        'url': '', 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7), 'crop_pct': 0.875,
        'interpolation': 'bilinear', 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'base_layer.0', 'classifier': 'fc', 'license': 'bsd-3-clause', **kwargs}


def _variant_cfgs(v: DLAVariant) -> Dict[str, Dict[str, Any]]:
    if v.in_timm:  # timm's ImageNet-1k weights, on timm's hub repo (the hub id is completed to 'timm/<name>.in1k')
        licence = {'license': _WEIGHT_LICENSES[v.name]} if v.name in _WEIGHT_LICENSES else {}
        return {f'{v.name}.in1k': _cfg(hf_hub_id='timm/', **licence)}
    notes = (f"paper's {v.paper_name}" if v.paper_name else v.name, 'no pretrained weights (not in timm)')
    return {v.name: _cfg(paper_ids='arXiv:1707.06484', notes=notes)}


default_cfgs = generate_default_cfgs({k: c for v in VARIANTS.values() for k, c in _variant_cfgs(v).items()})


REPLACED: List[str] = []  # timm built-in names we replaced
REGISTERED: List[str] = []  # every name we registered, table order


def _register(fn: Callable[..., DLA]) -> Callable[..., DLA]:
    """timm's ``register_model`` for the entrypoint of variant ``fn.__name__``, with timm's "Overwriting ... in
    registry" warning silenced for exactly that name; records it in ``REGISTERED`` (and ``REPLACED`` if timm had it)."""
    name = fn.__name__
    if is_model(name):
        REPLACED.append(name)
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', rf'Overwriting {re.escape(name)} in registry ', UserWarning)
        register_model(fn)
    REGISTERED.append(name)
    __all__.append(name)
    return fn


# One entrypoint per row of dla_plugins.VARIANTS, in table order (tests/timm/test_adapter.py keeps them equal).
@_register
def dla34(pretrained: bool = False, **kwargs: Any) -> DLA:
    """dla34, the paper's DLA-36: basic blocks."""
    return create_timm_dla('dla34', pretrained, **kwargs)


@_register
def dla46_c(pretrained: bool = False, **kwargs: Any) -> DLA:
    """dla46_c, the paper's DLA-48-B-s: bottleneck blocks, small channels."""
    return create_timm_dla('dla46_c', pretrained, **kwargs)


@_register
def dla46_m(pretrained: bool = False, **kwargs: Any) -> DLA:
    """dla46_m, the paper's DLA-48-B-m: bottleneck blocks, medium channels (not in timm: no weights)."""
    return create_timm_dla('dla46_m', pretrained, **kwargs)


@_register
def dla46x_c(pretrained: bool = False, **kwargs: Any) -> DLA:
    """dla46x_c, the paper's DLA-48-S-s: split bottlenecks (C=32), small channels."""
    return create_timm_dla('dla46x_c', pretrained, **kwargs)


@_register
def dla60x_c(pretrained: bool = False, **kwargs: Any) -> DLA:
    """dla60x_c, the paper's DLA-62-S-s: split bottlenecks (C=32), small channels."""
    return create_timm_dla('dla60x_c', pretrained, **kwargs)


@_register
def dla60(pretrained: bool = False, **kwargs: Any) -> DLA:
    """dla60, the paper's DLA-62-B: bottleneck blocks."""
    return create_timm_dla('dla60', pretrained, **kwargs)


@_register
def dla60x(pretrained: bool = False, **kwargs: Any) -> DLA:
    """dla60x, the paper's DLA-62-S: split bottlenecks (C=32)."""
    return create_timm_dla('dla60x', pretrained, **kwargs)


@_register
def dla102(pretrained: bool = False, **kwargs: Any) -> DLA:
    """dla102, the paper's DLA-104-B: bottleneck blocks, residual roots."""
    return create_timm_dla('dla102', pretrained, **kwargs)


@_register
def dla102x(pretrained: bool = False, **kwargs: Any) -> DLA:
    """dla102x, the paper's DLA-104-S: split bottlenecks (C=32), residual roots."""
    return create_timm_dla('dla102x', pretrained, **kwargs)


@_register
def dla102x2(pretrained: bool = False, **kwargs: Any) -> DLA:
    """dla102x2 (no paper name in the variant table): split bottlenecks (C=64), residual roots."""
    return create_timm_dla('dla102x2', pretrained, **kwargs)


@_register
def dla169(pretrained: bool = False, **kwargs: Any) -> DLA:
    """dla169 (no paper name in the variant table): bottleneck blocks, residual roots."""
    return create_timm_dla('dla169', pretrained, **kwargs)


@_register
def dla60_res2net(pretrained: bool = False, **kwargs: Any) -> DLA:
    """dla60_res2net (no paper name in the variant table): Res2Net bottlenecks, as timm's."""
    return create_timm_dla('dla60_res2net', pretrained, **kwargs)


@_register
def dla60_res2next(pretrained: bool = False, **kwargs: Any) -> DLA:
    """dla60_res2next (no paper name in the variant table): Res2NeXt bottlenecks (C=8), as timm's."""
    return create_timm_dla('dla60_res2next', pretrained, **kwargs)
