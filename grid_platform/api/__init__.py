"""The read API: generated fetcher routes, identity, policy and the alert-rule store.

Entry points for the CLI: ``create_app(settings=None)``, ``serve(host, port)`` and
``mint_token(sub, organizations=..., scopes=..., email=..., expires_in=...)``.
"""

from grid_platform.api.app import create_app, serve
from grid_platform.api.identity import mint_token

__all__ = ["create_app", "mint_token", "serve"]
