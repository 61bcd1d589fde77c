"""Tools around the model: the ``dla-plugins`` CLI, benchmarks, the zoo table, the demo and synthetic data.

Host frameworks and optional packages are imported lazily, inside the function that needs them.
"""
