"""``python -m gradprobe.book run|build``: see :mod:`gradprobe.book.runner`."""
import sys

from .runner import main

sys.exit(main())
