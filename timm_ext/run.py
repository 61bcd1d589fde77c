"""Run a script (e.g. timm's own ``train.py``) with our DLA models registered in timm.

    python -m timm_ext.run path/to/pytorch-image-models/train.py --model dla34 --data-dir DIR ...
    torchrun --nproc_per_node 2 -m timm_ext.run path/to/train.py --model dla60x ...

``timm_ext`` is imported first (replacing timm's DLA entries by ours and adding ``dla46_m``); the script then runs
as ``__main__`` with its own arguments, exactly as ``python path/to/train.py ...`` would.
"""
import os
import runpy
import sys
from typing import List, Optional

__all__ = ['main']

USAGE = 'usage: python -m timm_ext.run SCRIPT.py [SCRIPT ARGS...]'


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(USAGE + '\n\n' + (__doc__ or '').strip())
        raise SystemExit(0 if argv else 2)
    script = argv[0]
    if not os.path.isfile(script):
        raise SystemExit(f'timm_ext.run: script: no such file {script!r}\n{USAGE}')
    import timm_ext  # noqa: F401  (registers the DLA models before the script imports timm's factory)

    sys.argv = [script, *argv[1:]]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))  # as `python script.py` would
    runpy.run_path(script, run_name='__main__')


if __name__ == '__main__':
    main()
