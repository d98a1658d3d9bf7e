"""``python -m cardinsa_company.dispatcher``."""

import sys

from cardinsa_company.dispatcher.process import main

sys.exit(main())
