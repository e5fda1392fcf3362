"""``python -m gradprobe.diagnose package.module:factory --input-shape 8,3,224,224`` (see :func:`gradprobe.diagnose.cli.main`)."""
import sys

from gradprobe.diagnose.cli import main

sys.exit(main())
