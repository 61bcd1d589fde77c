"""The ``dla-plugins`` command (``cli``) and what its user commands run: the model zoo table and the demo.

Host frameworks and optional packages are imported lazily, inside the function that needs them.
"""
