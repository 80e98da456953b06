"""``python -m jupyter_tfserving``: the same as ``jupyter tfserving``."""

from .app import main

main()
