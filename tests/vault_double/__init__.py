"""A test double of the part of HashiCorp Vault's HTTP API that medrelay's keys service uses.

See server.py for the endpoints it serves and where it deliberately differs from Vault.
"""

from .server import RecordedRequest, VaultDouble

__all__ = ["RecordedRequest", "VaultDouble"]
