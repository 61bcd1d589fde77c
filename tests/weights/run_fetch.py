"""Child process of the weights tests: ``python -m tests.weights.run_fetch ENTRY_JSON [--go FILE] [--timeout S]``
registers the entry (loopback sources only), fetches it and prints the path. The loopback guard is installed first.
With ``--go FILE`` it prints ``ready`` once imported and waits for FILE to exist before fetching (so that several
children start fetching at the same moment)."""
import argparse
import json
import os
import time

from tests.weights.guard import install_loopback_guard


def main() -> None:
    install_loopback_guard()
    from dla_plugins import weights

    parser = argparse.ArgumentParser()
    parser.add_argument('spec')
    parser.add_argument('--go', default=None)
    parser.add_argument('--timeout', type=float, default=None)
    args = parser.parse_args()
    spec = json.loads(args.spec)
    sources = tuple(weights.Source(**s) for s in spec.pop('sources'))
    weights.register(weights.WeightEntry(sources=sources, **spec), replace=True)
    if args.go:
        print('ready', flush=True)
        while not os.path.exists(args.go):
            time.sleep(0.001)
    print(weights.fetch(spec['name'], progress=False, timeout=args.timeout), flush=True)


if __name__ == '__main__':
    main()
