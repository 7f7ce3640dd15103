"""Security for both nodes: TLS, authentication (a users file and API keys, or delegation to an OpenSearch cluster's
security plugin), a Host check and the JSON content type, in one middleware (``middleware``) that ``neuralpipe.node``
puts in front of every role. The user type and the security plugin's answers live in ``opensearch_contract.security``.
"""

from neuralpipe.security.config import SecurityOptions
from neuralpipe.security.middleware import Guard, authinfo, guard_middleware

__all__ = ["Guard", "SecurityOptions", "authinfo", "guard_middleware"]
