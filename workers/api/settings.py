"""The `api` section of the configuration (router.settings.ApiSettings), for the API's modules.

Like every section it comes from the configuration file's ``api:`` mapping and
``ACD_API__<FIELD>`` environment variables; tokens come from the environment or from the
files named by ``token_file`` / ``read_token_file`` and are never logged.
"""

from router.settings import PAUSE_REASON_PATTERN as REASON_PATTERN
from router.settings import ApiSettings

__all__ = ["REASON_PATTERN", "ApiSettings"]
