"""Regenerate the "Weights by name" table of docs/checkpoints.md from the registry (dla_plugins/weights/table.py).

    python scripts/weights_doc.py          # rewrite the table in place
    python scripts/weights_doc.py --check  # exit 1 if the doc and the registry differ

tests/weights/test_docs.py fails when they drift.
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dla_plugins.weights.doc import replace_table  # noqa: E402

DOC = ROOT / 'docs' / 'checkpoints.md'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true', help='only compare; exit 1 if the doc is out of date')
    args = parser.parse_args()
    old = DOC.read_text()
    new = replace_table(old)
    if args.check:
        if new != old:
            print(f'{DOC}: the weights table differs from the registry; run python scripts/weights_doc.py')
            return 1
        return 0
    if new != old:
        DOC.write_text(new)
        print(f'{DOC}: weights table regenerated')
    return 0


if __name__ == '__main__':
    sys.exit(main())
