"""corral's benchmark harness: corral next to its peers and floors, in one run.

See bench/README.md. Entry points: ``bench/run.sh`` or ``python -m bench``.
"""
