"""Compatibility path: SageMaker jobs staged before the package was split by stage run
``offer_ai.sagemaker_entry``; the entry point lives in :mod:`offer_ai.model.sagemaker_entry`.
"""

import sys

from offer_ai.model.sagemaker_entry import *  # noqa: F401,F403
from offer_ai.model.sagemaker_entry import main

if __name__ == "__main__":
    sys.exit(main())
