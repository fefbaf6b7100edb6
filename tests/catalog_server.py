"""Moved to testkit.catalog_server (shared with the benchmarks). Re-exported here with one difference:
the tests' CatalogServer checks every proposal with acryl-datahub's schema classes by default."""
from __future__ import annotations

from typing import Optional

from testkit.catalog_server import CatalogServer as _CatalogServer
from testkit.catalog_server import ProposalCheck
from tests.catalog_validation import validate_proposal


class CatalogServer(_CatalogServer):
    def __init__(self, token: Optional[str] = None, validate: Optional[ProposalCheck] = validate_proposal):
        super().__init__(token, validate)
