"""Build hook: ship the top-level ``configs/`` inside the adapters (as detectron2 ships its model-zoo configs).

Metadata lives in pyproject.toml; this only copies ``configs/detectron2`` -> ``d2_ext/configs`` and ``configs/mmseg``
-> ``mmseg_ext/configs`` into the build, so ``d2_ext.get_config_file``/``mmseg_ext.get_config_file`` work from a wheel.
"""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

CONFIGS = {'detectron2': 'd2_ext', 'mmseg': 'mmseg_ext'}


class BuildPyWithConfigs(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):  # an editable install reads the checkout's configs/ directly
            return
        here = os.path.dirname(os.path.abspath(__file__))
        for host, package in CONFIGS.items():
            src = os.path.join(here, 'configs', host)
            if os.path.isdir(src):  # absent only in a broken sdist
                shutil.copytree(src, os.path.join(self.build_lib, package, 'configs'), dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns('__pycache__'))


setup(cmdclass={'build_py': BuildPyWithConfigs})
