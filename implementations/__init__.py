"""The built-in backends, one per file; `harness.registry` lists them by name.

`numpy` (numpy_textbook.py) is the chain rule as written in a textbook and the reference of
every comparison; `numpy_fast` is the same maths tuned for speed; `torch` and `jax` derive
their gradients with the frameworks' automatic differentiation. template_backend.py is the
contract with every method explained, the starting point for a backend of your own.
"""
