"""Compatibility path: ``python -m offer_ai.local_dynamodb`` still starts the local DynamoDB.

The module lives in :mod:`offer_ai.online.local_dynamodb`; this shim only forwards to it.
"""

import sys

from offer_ai.online.local_dynamodb import *  # noqa: F401,F403
from offer_ai.online.local_dynamodb import main

if __name__ == "__main__":
    sys.exit(main())
