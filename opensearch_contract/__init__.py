"""What OpenSearch defines once for every neuralpipe package: the error types and error body, request-body parsing,
setting values, and k-NN score conversions.

The package sits below ``processors``, ``mlnode`` and ``datanode`` and imports none of them, so each of those can
answer and raise OpenSearch-shaped errors without importing another.
"""
