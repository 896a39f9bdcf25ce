"""The console entry points (``aeon-train``, ``aeon-tune``, ``aeon-record-demos``, ``aeon-distill``,
``aeon-submit``, ``aeon-collect``, ``aeon-eval``, ``aeon-compare``): argument parsing and messages around the
library; each module's ``main`` is also ``python -m aeon_trl.cli.<name>``, and the repository's ``pipelines/`` and
``slurm/`` scripts call it."""
