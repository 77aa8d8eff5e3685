"""``python -m memory_mosaics.cli``: the same as ``mosaic`` (torchrun launches it so)."""

import sys

from memory_mosaics.cli import main

sys.exit(main())
