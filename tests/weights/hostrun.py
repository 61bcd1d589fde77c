"""``python -m tests.weights.hostrun (-m MODULE | SCRIPT) ARGS...``: run a host tool (mmseg ``tools/train.py``,
``python -m d2_ext.run ...``, detectron2's ``lazyconfig_train_net.py``) in a process whose sockets refuse every
non-loopback address (tests/weights/guard.py): a host test that fetches weights can reach the loopback mirror only."""
import os
import runpy
import sys

from tests.weights.guard import install_loopback_guard


def main() -> None:
    install_loopback_guard()
    args = sys.argv[1:]
    if args[0] == '-m':
        sys.argv = args[1:]
        runpy.run_module(args[1], run_name='__main__', alter_sys=True)
    else:
        sys.argv = args
        sys.path.insert(0, os.path.dirname(os.path.abspath(args[0])))
        runpy.run_path(args[0], run_name='__main__')


if __name__ == '__main__':
    main()
