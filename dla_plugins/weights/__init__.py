"""Pretrained weights by name: a registry of every public DLA file (sources in priority order, published hashes,
layout family, the model each builds) and a fetcher with a cache, mirror, failover, resumed downloads, a file lock
and verification.

    >>> from dla_plugins import weights
    >>> path = weights.fetch('dla34.in1k')                 # or weights.resolve('dlap://dla34.in1k')
    >>> entry = weights.get('centernet/ctdet_coco_dla_2x')  # .family, .variant, .model_kwargs, .sources
    >>> model = dla_plugins.create_from_weights(entry)      # the DLASeg the file loads into (a builder)

Environment: ``DLA_PLUGINS_HOME`` (cache, default ``~/.cache/dla-plugins/weights``), ``DLA_PLUGINS_MIRROR`` (an
http(s) base URL or folder laid out as ``<name>/<file>``, tried first), ``DLA_PLUGINS_OFFLINE=1`` or
``HF_HUB_OFFLINE=1`` (cache only), ``DLA_PLUGINS_TIMEOUT`` (seconds, default 30).
"""
from ..files import NamedFiles, provide_named_files
from .fetch import (
                    ENV_HOME,
                    ENV_MIRROR,
                    ENV_OFFLINE,
                    ENV_TIMEOUT,
                    SCHEME,
                    CacheRecord,
                    WeightsError,
                    cache_dir,
                    cache_record,
                    cached_path,
                    describe_load,
                    fetch,
                    load_line,
                    mirror_sources,
                    offline_reason,
                    resolve,
                    verify,
)
from .registry import (
                    BUILDERS,
                    SOURCE_KINDS,
                    Source,
                    WeightEntry,
                    entries,
                    get,
                    name_for,
                    names,
                    pretrained_path,
                    register,
                    registered,
                    unregister,
)

provide_named_files(NamedFiles(resolve=resolve, load_line=load_line))

__all__ = ['Source', 'WeightEntry', 'SOURCE_KINDS', 'BUILDERS', 'register', 'unregister', 'registered', 'get',
           'names', 'entries', 'name_for', 'pretrained_path', 'WeightsError', 'CacheRecord', 'cache_dir',
           'offline_reason', 'cache_record', 'cached_path', 'fetch', 'resolve', 'verify', 'describe_load', 'load_line',
           'mirror_sources', 'SCHEME', 'ENV_HOME', 'ENV_MIRROR', 'ENV_OFFLINE', 'ENV_TIMEOUT']
