"""Tools for developing the project, not shipped with it (pyproject packages `flowcore` only)."""
