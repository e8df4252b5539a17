"""`python -m adapters.national_axis.simulator --config FILE [--host H] [--port N]`."""

import sys

from adapters.national_axis.simulator.app import main

sys.exit(main())
