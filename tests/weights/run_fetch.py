"""Child process of the weights tests: ``python -m tests.weights.run_fetch ENTRY_JSON`` registers the entry (loopback
sources only), fetches it and prints the path. The loopback guard is installed first."""
import json
import sys

from tests.weights.guard import install_loopback_guard


def main() -> None:
    install_loopback_guard()
    from dla_plugins import weights

    spec = json.loads(sys.argv[1])
    sources = tuple(weights.Source(**s) for s in spec.pop('sources'))
    weights.register(weights.WeightEntry(sources=sources, **spec), replace=True)
    print(weights.fetch(spec['name'], progress=False), flush=True)


if __name__ == '__main__':
    main()
