"""``python -m gradprobe.book run|build``: see :mod:`gradprobe.book.runner`."""
import signal
import sys

from .runner import main

# SIGTERM unwinds like Ctrl-C: the run's private folder is removed and its lock released.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
sys.exit(main())
