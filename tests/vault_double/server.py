"""A test double of a documented subset of HashiCorp Vault's HTTP API, served on 127.0.0.1.

This is not Vault and not a Vault emulator: it is a stand-in for the few endpoints the keys
service's Vault backend calls, written from Vault's API documentation and source so that the
same tests pass against it and against a real Vault (they run against Vault when VAULT_ADDR is
set). Request and response shapes, status codes and error messages follow Vault; where they
could not be made identical, the difference is listed below.

Endpoints (all under /v1/, JSON, token in X-Vault-Token or ``Authorization: Bearer``;
X-Vault-Namespace is ignored):

* ``GET|HEAD sys/health`` (200 active, 503 sealed; ``activecode``/``sealedcode`` honoured) and
  ``GET sys/seal-status``: no token needed, answered while sealed.
* ``GET auth/token/lookup-self``, ``POST auth/token/renew-self``, ``POST auth/token/revoke-self``.
* ``POST auth/<mount>/login`` for AppRole (role_id, secret_id) and Kubernetes (role, jwt)
  mounts, which exist once a role was added on them.
* Transit at ``<transit_mount>/``: ``keys`` (LIST), ``keys/:name`` (GET, POST),
  ``keys/:name/config``, ``keys/:name/rotate``, ``encrypt/:name``, ``decrypt/:name``,
  ``rewrap/:name``, ``datakey/(plaintext|wrapped)/:name``, ``hmac/:name[/:algorithm]``,
  ``sign/:name[/:algorithm]``, ``verify/:name[/:algorithm]``; key types aes256-gcm96 (derived or
  not) and ecdsa-p256.

Behaviour kept from Vault: every error is ``{"errors": [...]}``; 403 for a missing token
("missing client token"), for an unknown, revoked or expired token (Vault's two-error text
"permission denied" + "invalid token") and for a policy that does not grant the capability;
policies are Vault ACL path rules with ``*`` and ``+`` and Vault's priority rules, every non-root
token also carries the default policy (lookup-self, renew-self, revoke-self); POST is ``create``
on keys/:name and encrypt/:name when the key does not exist (encrypt then creates it, derived iff
a context is given) and ``update`` otherwise; 404 for unknown paths and missing keys on read,
405 for an unsupported method; 503 "Vault is sealed" for everything but the two sys endpoints;
batch requests report per-item ``error`` and answer 400 (or ``partial_failure_response_code``
when some items succeeded) with the batch results in the body; rewrap batches answer 200.

Where the double deliberately differs from Vault:

* Ciphertexts, signatures and HMACs use the double's own random keys: the layout is Vault's
  (``vault:vN:`` + base64 of nonce || ciphertext || tag for AES-GCM, DER for ECDSA) but no value
  is interchangeable with a real Vault, and nothing is persisted: keys live as long as the object.
* Only aes256-gcm96 and ecdsa-p256 keys: other Vault key types, convergent encryption,
  auto-rotation and batch_input on hmac/sign/verify are refused with a 400 that says "not
  supported by this test double"; key deletion, export, backup, trim and the other transit paths
  are not served (405 or 404); exportable/allow_plaintext_backup are accepted and ignored.
* AppRole and Kubernetes roles are registered directly (no role endpoints); the Kubernetes JWT is
  compared as an opaque string instead of being validated with a TokenReview, and an AppRole's
  role_id doubles as its role name in token metadata.
* Tokens are service tokens with a TTL and no max TTL, no use limit, no entity, no accessor
  endpoints; renew-self extends by ``increment`` or the original TTL. The root token never
  expires and, as in Vault, cannot be renewed (400 "invalid lease ID").
* Policies are checked against the path and capability only: no allowed/denied/required
  parameters, no control groups, no sudo-only paths. The create/update split comes from the
  existence checks of keys/:name and encrypt/:name (Vault's only such checks among these paths).
* Signing hashes with sha1/sha2-*/sha3-* only ("none" and RSA options do not apply to
  ecdsa-p256); a prehashed digest of any length is used the way Go's ECDSA uses it.
* Messages Vault takes from Go libraries (base64 errors, batch decoding errors) are reproduced
  in form, with offsets computed the double's way; a field of the wrong type is reported by its
  type, not echoed as Vault does, so no secret can end up in an error.

Nothing is ever logged: request bodies (plaintexts, contexts) and tokens stay in memory, in
``requests``, whose entries do not show their body or token in repr().
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .acl import DEFAULT_POLICY, Acl, validate_rules
from .auth import AuthMethods
from .errors import (
    INVALID_TOKEN,
    MISSING_TOKEN,
    POLICY_DENIED,
    SEALED,
    Reply,
    VaultError,
    multierror,
)
from .routing import Call, Route, find_route, operation_for
from .system import Cluster
from .tokens import Token, TokenStore
from .transit import Transit

__all__ = ["RecordedRequest", "VaultDouble"]

_UNSUPPORTED_OPERATION = multierror("unsupported operation")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received, for assertions (e.g. that batch_input was used).

    `path` is Vault's logical path, as its audit log shows it: after /v1/, without the query.
    """

    method: str
    path: str
    body: Any = field(repr=False)
    token: str | None = field(repr=False)

    @property
    def json(self) -> Any:
        """The parsed JSON body (None without one); same as `body`."""
        return self.body


class VaultDouble:
    """A Vault stand-in on 127.0.0.1 with a random port; see the module docstring."""

    def __init__(self, transit_mount: str = "transit") -> None:
        self._lock = threading.RLock()
        self._tokens = TokenStore()
        self._policies: dict[str, dict[str, frozenset[str]]] = {
            "default": validate_rules(DEFAULT_POLICY)
        }
        self._auth = AuthMethods(self._tokens)
        self._transit = Transit(transit_mount.strip("/"))
        self._cluster = Cluster()
        self._routes: list[Route] = [*self._transit.routes(), *self._auth.routes()]
        self._sealed = False
        self._hang = 0.0
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.transit_mount = self._transit.mount
        self.address = ""
        self.root_token = self._tokens.create_root().id
        self.requests: list[RecordedRequest] = []

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> VaultDouble:
        """Listen on 127.0.0.1 (random port) in a daemon thread; sets `address`."""
        if self._server is not None:
            return self
        self._stopping.clear()
        handler = type("_BoundHandler", (_Handler,), {"double": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        self._server = server
        self.address = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="vault-double",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; requests still hanging are released."""
        self._stopping.set()
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> VaultDouble:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- test controls --------------------------------------------------------------------

    def seal(self) -> None:
        with self._lock:
            self._sealed = True

    def unseal(self) -> None:
        with self._lock:
            self._sealed = False

    def set_hang(self, seconds: float) -> None:
        """Delay every answer by `seconds` (0 turns it off), to exercise client timeouts."""
        self._hang = max(0.0, seconds)

    def add_token(self, policies: list[str], ttl: int = 3600, renewable: bool = True) -> str:
        """A new token with `policies` (plus "default"), as auth/token/create would issue."""
        with self._lock:
            token = self._tokens.create(
                policies,
                ttl=ttl,
                renewable=renewable,
                path="auth/token/create",
                display_name="token",
                orphan=False,
            )
            return token.id

    def add_approle(
        self,
        role_id: str,
        secret_id: str,
        policies: list[str],
        ttl: int = 3600,
        mount: str = "approle",
    ) -> None:
        with self._lock:
            self._auth.add_approle(mount.strip("/"), role_id, secret_id, policies, ttl)

    def add_kubernetes_role(
        self,
        role: str,
        jwt: str,
        policies: list[str],
        ttl: int = 3600,
        mount: str = "kubernetes",
    ) -> None:
        with self._lock:
            self._auth.add_kubernetes_role(mount.strip("/"), role, jwt, policies, ttl)

    def add_policy(self, name: str, rules: dict[str, list[str]]) -> None:
        """Create or replace an ACL policy: path glob -> capabilities."""
        if name == "root":
            raise ValueError("the root policy cannot be changed")
        checked = validate_rules(rules)
        with self._lock:
            self._policies[name] = checked

    def expire_token(self, token: str) -> None:
        """Make `token` invalid now: Vault then answers 403 as for any bad token."""
        with self._lock:
            try:
                self._tokens.expire(token)
            except KeyError:
                raise ValueError("no such token was issued by this double") from None

    def key_names(self) -> list[str]:
        with self._lock:
            return self._transit.key_names()

    # -- request handling -----------------------------------------------------------------

    def _handle(self, method: str, target: str, headers: Message, raw_body: bytes) -> Reply:
        """Answer one HTTP request; never raises."""
        split = urlsplit(target)
        if not split.path.startswith("/v1/"):
            return Reply(404, {"errors": []})
        path = unquote(split.path[len("/v1/") :])
        query = dict(parse_qsl(split.query))
        token_id = headers.get("X-Vault-Token") or _bearer(headers.get("Authorization"))
        body, parse_error = _parse_json(raw_body)
        self.requests.append(RecordedRequest(method, path, body, token_id))
        if self._hang:
            self._stopping.wait(self._hang)
        try:
            if parse_error is not None:
                raise VaultError(400, f"failed to parse JSON input: {parse_error}")
            # Vault's framework treats a null field as one not given.
            fields = {key: value for key, value in (body or {}).items() if value is not None}
            with self._lock:
                return self._dispatch(method, path, query, token_id, fields)
        except VaultError as exc:
            return Reply(exc.status, {"errors": exc.errors})
        except Exception as exc:
            return Reply(500, {"errors": [multierror(f"test double error: {type(exc).__name__}")]})

    def _dispatch(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        token_id: str | None,
        body: dict[str, Any],
    ) -> Reply:
        if path == "sys/health":
            if method not in ("GET", "HEAD"):
                raise VaultError(405, _UNSUPPORTED_OPERATION)
            return self._cluster.health(sealed=self._sealed, query=query, head=method == "HEAD")
        if path == "sys/seal-status":
            if method != "GET":
                raise VaultError(405, _UNSUPPORTED_OPERATION)
            return self._cluster.seal_status(sealed=self._sealed)
        if self._sealed:
            raise VaultError(503, SEALED)
        operation = operation_for(method, query)
        if operation is None:
            raise VaultError(405, _UNSUPPORTED_OPERATION)
        found = find_route(self._routes, path)
        now = time.time()
        if found is not None and found[0].unauthenticated:
            route, params = found
            return self._invoke(
                route, Call(method, path, operation, params, body, query, None, now)
            )
        token = self._authenticate(token_id, now)
        if found is None:
            self._authorize(token, path, operation)
            raise VaultError(404, self._no_route(path))
        route, params = found
        if operation == "update" and route.exists is not None and not route.exists(params):
            operation = "create"
        self._authorize(token, path, operation)
        return self._invoke(route, Call(method, path, operation, params, body, query, token, now))

    @staticmethod
    def _invoke(route: Route, call: Call) -> Reply:
        handler = route.handlers.get(call.operation)
        if handler is None:
            raise VaultError(405, _UNSUPPORTED_OPERATION)
        return handler(call)

    def _authenticate(self, token_id: str | None, now: float) -> Token:
        if not token_id:
            raise VaultError(403, MISSING_TOKEN)
        token = self._tokens.get(token_id, now)
        if token is None:
            raise VaultError(403, INVALID_TOKEN)
        return token

    def _authorize(self, token: Token, path: str, operation: str) -> None:
        policies = [self._policies[name] for name in token.policies if name in self._policies]
        if not Acl(policies, root=token.is_root).allows(path, operation):
            raise VaultError(403, POLICY_DENIED)

    def _no_route(self, path: str) -> str:
        mounted = (
            f"{self.transit_mount}/",
            "auth/token/",
            "sys/",
            *(f"auth/{mount}/" for mount in self._auth.mounts()),
        )
        if path.startswith(mounted):
            return multierror("unsupported path")
        return f'no handler for route "{path}". route entry not found.'


def _parse_json(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(body, None), or (None, why it is not a JSON object); an empty body is (None, None)."""
    if not raw.strip():
        return None, None
    try:
        body = json.loads(raw)
    except ValueError as exc:
        return None, str(exc.args[0])
    if not isinstance(body, dict):
        return None, "expected a JSON object"
    return body, None


def _bearer(value: str | None) -> str | None:
    if value and value.lower().startswith("bearer "):
        return value[len("bearer ") :].strip() or None
    return None


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.0 handler: one request per connection, bodies read by Content-Length."""

    double: VaultDouble
    server_version = "VaultDouble"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: paths, tokens and bodies must never reach a log."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        reply = self.double._handle(self.command, self.path, self.headers, raw)
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Cache-Control", "no-store")
            if reply.body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (timeout tests)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_LIST = _serve
