"""Console entry points (``[project.scripts]`` in pyproject.toml): thin argument parsing over the library."""
