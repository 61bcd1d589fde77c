"""timm adapter: ``import timm_ext`` registers every DLA variant of :mod:`dla_plugins` in timm's model registry.

timm's built-in DLA entries (dla34 ... dla60_res2next) are replaced by ours under the same names, with the same
pretrained tags and cfgs (so ``pretrained=True`` fetches the same hub weights and loads them strictly); variants
timm lacks (``dla46_m``) are added without weights. See docs/timm.md.
"""
try:
    import timm  # noqa: F401
    import timm.models  # noqa: F401
except ImportError as e:  # exercised by the wheel test (tests/tools/test_wheel.py)
    from dla_plugins._extras import adapter_import_failed

    adapter_import_failed('timm_ext', 'timm', e)

from .dla import REGISTERED, REPLACED, checkpoint_filter_fn, create_timm_dla, default_cfgs

__all__ = ['REGISTERED', 'REPLACED', 'checkpoint_filter_fn', 'create_timm_dla', 'default_cfgs']
