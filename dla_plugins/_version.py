"""The package version (one place: ``dla_plugins.__version__``, the fetcher's User-Agent)."""
__version__ = '0.1.0'
