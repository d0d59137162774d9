"""pytest's view of the repository root: ``python -m pytest`` collects ``tests/`` and the doctests of ``embspace/``
(``pyproject.toml``: ``testpaths``, ``--doctest-modules``).

``embspace/kernels/triton.py`` is left out of the doctest collection: it has no examples, it imports Triton at its top
(absent on macOS and ARM), and ``TRITON_INTERPRET=1`` must be set before Triton is first imported, which
``tests/test_triton.py`` does for the tests that interpret the kernels on the CPU.
"""

collect_ignore = ["embspace/kernels/triton.py"]
