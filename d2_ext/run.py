"""Run detectron2's own tools (or any script) with our yaml configs: the one line they need.

    python -m d2_ext.run path/to/detectron2/tools/train_net.py --config-file CFG [--num-gpus N] [KEY VALUE ...]
    python -m d2_ext.run path/to/tools/analyze_model.py --tasks parameter --config-file CFG

Before the script runs, ``d2_ext`` is imported (the ``build_dlap_*`` backbones and the
``/@import-d2_ext/detectron2-model-zoo/`` prefix of our ``_BASE_`` files) and ``MODEL.DLAP`` is added to detectron2's
defaults (:func:`d2_ext.config.add_dlap_to_defaults`), so the script's ``detectron2.config.get_cfg()`` accepts our
configs. The script then runs as ``__main__`` with its own arguments, as ``python path/to/script.py ...`` would, and
the processes it spawns (detectron2's ``launch`` with ``--num-gpus N``) get the same set-up.
With the sal-detectron2 wheel the stock tools are installed as the ``tools`` package:
``python -c "import tools.train_net as t; print(t.__file__)"`` prints the path.

Bad input (no script, a missing script, or what detectron2 reports while the script reads its config, overrides,
datasets or checkpoint: see :func:`d2_ext.config.detectron2_input_error`) is one line ``d2_ext.run: error: MESSAGE``
on stderr and exit status 2; anything unexpected keeps its traceback and exits with status 1
(:mod:`dla_plugins.tools.errors`).
Errors in processes the script spawns (``--num-gpus N``) are reported by those processes, as without the runner.
"""
import os
import sys
import types
from typing import Any, Dict, List, Optional

from dla_plugins.tools.errors import fail, run_entry

__all__ = ['main', 'SCRIPT_ENV']

PROG = 'd2_ext.run'
USAGE = 'usage: python -m d2_ext.run SCRIPT.py [SCRIPT ARGS...]'
SCRIPT_ENV = 'D2_EXT_RUN_SCRIPT'  # the script's path, for the processes it spawns


def _prepare() -> None:
    import d2_ext  # noqa: F401  (registers the backbones and the path handler of our _BASE_ prefix)

    from .config import add_dlap_to_defaults

    add_dlap_to_defaults()


def _input_error(error: BaseException) -> bool:
    from .config import detectron2_input_error

    return detectron2_input_error(error)


def _execute(script: str, namespace: Dict[str, Any]) -> None:
    with open(script, 'rb') as f:
        code = compile(f.read(), script, 'exec')
    exec(code, namespace)


def main(argv: Optional[List[str]] = None) -> None:
    """Prepare d2_ext, then run ``argv[0]`` as ``__main__`` with ``argv[1:]`` as its arguments."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ('-h', '--help'):
        print(USAGE + '\n\n' + (__doc__ or '').strip())
        raise SystemExit(0)
    if not argv:
        fail(PROG, f'script: none given ({USAGE})')
    script = os.path.abspath(argv[0])
    if not os.path.isfile(script):
        fail(PROG, f'script: no such file {argv[0]!r} ({USAGE})')
    _prepare()
    os.environ[SCRIPT_ENV] = script
    sys.argv = [script, *argv[1:]]
    sys.path.insert(0, os.path.dirname(script))  # as `python script.py` would
    module = types.ModuleType('__main__')
    module.__file__, module.__package__ = script, ''
    # Why not runpy.run_path: with the 'spawn' start method (detectron2's launch), multiprocessing re-creates
    # __main__ in each child from __main__.__spec__; run_path leaves it None, so a child would re-run the bare script,
    # without d2_ext. Naming this module makes each child import it as __mp_main__, which prepares d2_ext and
    # re-executes the script (bottom of this file) before the child unpickles the script's functions.
    module.__spec__ = __spec__
    saved = sys.modules['__main__']
    sys.modules['__main__'] = module
    try:
        run_entry(PROG, lambda: _execute(script, module.__dict__), _input_error)
    finally:
        sys.modules['__main__'] = saved


if __name__ == '__main__':
    main()
elif __name__ == '__mp_main__' and os.environ.get(SCRIPT_ENV):  # a process spawned by the script (see main)
    _prepare()
    __file__ = os.environ[SCRIPT_ENV]
    _execute(__file__, globals())  # the script's definitions; its `if __name__ == '__main__'` block does not run
