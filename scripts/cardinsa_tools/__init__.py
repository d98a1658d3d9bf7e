"""Cardinsa's development tooling (not part of the wheel; `make setup` puts it on sys.path).

- :mod:`cardinsa_tools.suite`: `make up`, the whole suite on one machine;
- :mod:`cardinsa_tools.launcher`: that suite started as a child process on free
  ports, waited for and stopped by process group (the benchmark, the end-to-end
  and the fault tests all start it this way);
- :mod:`cardinsa_tools.bench`: `make bench`;
- :mod:`cardinsa_tools.premium_story`: `make premium-story`, one policy's premium
  transactions on a suite of its own.

Nothing here is imported at this package's import: ``python -m cardinsa_tools.suite``
must reach its signal handlers before anything slow is loaded.
"""
