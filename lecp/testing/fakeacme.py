"""
An in-memory ACME server, as a twisted.web resource, for unit tests through C{treq.testing.StubTreq}.

It checks what a real CA checks (JWS signatures, nonces, the C{url} header, account kids) and
lets a test script the awkward cases: C{badNonce} storms, orders held in C{processing},
C{Retry-After}, invalid authorizations with or without an error, rate limits, a CA that forgot
its accounts, ARI, profiles and alternate chains. It issues real certificates from a throwaway CA.
"""

from __future__ import annotations

import datetime
import email.utils
import itertools
import json
import os

import attrs
import josepy as jose
from acme import jws
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.web.resource import Resource
from zope.interface import implementer

from lecp.interfaces import IChallengeResponder
from lecp.keys import certificate_to_pem

BASE = "https://acme.test"
PROBLEM = "urn:ietf:params:acme:error:"


class _Problem(Exception):
    def __init__(self, status, code, detail, headers=None, identifier=None):
        self.status, self.code, self.detail = status, code, detail
        self.headers = headers or {}
        self.identifier = identifier


def _token() -> str:
    return jose.b64encode(os.urandom(32)).decode()


def _make_ca(name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=36500))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


@implementer(IChallengeResponder)
@attrs.define
class MemoryResponder:
    """An HTTP-01 responder that keeps what it publishes in a dict (and remembers what it withdrew)."""

    challenge_type = "http-01"
    published: dict = attrs.field(factory=dict)
    withdrawn: list = attrs.field(factory=list)

    def start_responding(self, identifier, token, key_authorization):
        self.published[(identifier, token)] = key_authorization

    def stop_responding(self, identifier, token):
        self.published.pop((identifier, token), None)
        self.withdrawn.append((identifier, token))


@attrs.define(slots=False, eq=False)
class FakeACME(Resource):
    """
    The fake CA. Knobs (set them before or during a test):

    @ivar bad_nonces: reject this many of the next signed requests with C{badNonce}.
    @ivar processing_polls: after finalize, answer C{processing} this many more times.
    @ivar processing_retry_after: C{Retry-After} value sent with C{processing} orders.
    @ivar pending_polls: after a challenge is answered, the authorization stays C{pending} this many polls.
    @ivar failures: name → challenge error dict (validation fails), or C{None} for "invalid, no error".
    @ivar profiles: listed in the directory's meta when not empty.
    @ivar ari: whether the directory offers C{renewalInfo}.
    @ivar alternate_chains: how many alternate chains to link.
    @ivar reject_new_orders: a problem (status, code, detail, headers) answered to newOrder.
    @ivar lifetime: issued certificates' lifetime.
    @ivar responder: when set, validation checks the key authorization it published, as a CA would.
    """

    clock: object
    responder: MemoryResponder | None = None
    bad_nonces: int = 0
    processing_polls: int = 0
    processing_retry_after: str | None = None
    pending_polls: int = 0
    failures: dict = attrs.field(factory=dict)
    profiles: dict = attrs.field(factory=dict)
    ari: bool = False
    ari_window: tuple | None = None
    alternate_chains: int = 0
    reject_new_orders: tuple | None = None
    already_replaced: set = attrs.field(factory=set)
    lifetime: datetime.timedelta = datetime.timedelta(days=90)
    requests: list = attrs.field(factory=list)
    nonces: set = attrs.field(factory=set)
    accounts: dict = attrs.field(factory=dict)
    orders: dict = attrs.field(factory=dict)
    authzs: dict = attrs.field(factory=dict)
    certificates: dict = attrs.field(factory=dict)
    revoked: list = attrs.field(factory=list)
    _counter: object = attrs.field(factory=lambda: itertools.count(1))
    _ca: tuple = attrs.field(factory=lambda: _make_ca("Fake Intermediate"))
    _alt_cas: list = attrs.field(factory=list)
    _processing_left: dict = attrs.field(factory=dict)
    _pending_left: dict = attrs.field(factory=dict)

    isLeaf = True

    def __attrs_post_init__(self):
        Resource.__init__(self)

    # Helpers for tests

    @property
    def directory_url(self) -> str:
        return f"{BASE}/directory"

    def forget_accounts(self) -> None:
        """Behave like a CA that was reset (Pebble restarted): every account is unknown."""
        self.accounts.clear()

    def paths(self, method: str | None = None) -> list[str]:
        """The paths requested so far (optionally only for one method)."""
        return [p for m, p in self.requests if method in (None, m)]

    # HTTP

    def render(self, request):
        path = request.path.decode()
        method = request.method.decode()
        self.requests.append((method, path))
        if method in ("POST", "HEAD"):  # RFC 8555 §6.5: every POST answer and newNonce carry one
            nonce = jose.b64encode(next(self._counter).to_bytes(8, "big") + b"n").decode()
            self.nonces.add(nonce)
            request.setHeader(b"Replay-Nonce", nonce.encode())
        try:
            status, body, headers = self._dispatch(method, path, request)
        except _Problem as p:
            status, headers = p.status, dict(p.headers)
            doc = {"type": PROBLEM + p.code, "detail": p.detail}
            if p.identifier:
                doc["identifier"] = {"type": "dns", "value": p.identifier}
            body = json.dumps(doc).encode()
            headers.setdefault("Content-Type", "application/problem+json")
        request.setResponseCode(status)
        for name, value in headers.items():
            request.setHeader(name.encode(), value.encode() if isinstance(value, str) else value)
        if isinstance(body, (dict, list)):
            request.setHeader(b"Content-Type", b"application/json")
            body = json.dumps(body).encode()
        return body if method != "HEAD" else b""

    def _dispatch(self, method, path, request):
        if path == "/directory" and method == "GET":
            return 200, self._directory(), {}
        if path == "/nonce":
            return 200, b"", {}
        if path.startswith("/ari/") and method == "GET":
            return self._renewal_info(path[len("/ari/"):])
        if method != "POST":
            raise _Problem(405, "malformed", f"{method} not allowed here")
        payload, account = self._verify(request, path)
        handler = {
            "/new-account": self._new_account,
            "/new-order": self._new_order,
            "/revoke": self._revoke,
        }.get(path)
        if handler is None:
            kind = path.split("/")[1]
            handler = {"order": self._order, "finalize": self._finalize, "authz": self._authz,
                       "chall": self._challenge, "cert": self._certificate}.get(kind)
        if handler is None:
            raise _Problem(404, "malformed", f"no such resource {path}")
        return handler(path, payload, account)

    def _directory(self):
        directory = {
            "newNonce": f"{BASE}/nonce",
            "newAccount": f"{BASE}/new-account",
            "newOrder": f"{BASE}/new-order",
            "revokeCert": f"{BASE}/revoke",
            "keyChange": f"{BASE}/key-change",
            "meta": {"termsOfService": f"{BASE}/terms"},
        }
        if self.profiles:
            directory["meta"]["profiles"] = dict(self.profiles)
        if self.ari:
            directory["renewalInfo"] = f"{BASE}/ari"
        return directory

    def _verify(self, request, path):
        try:
            signed = jws.JWS.json_loads(request.content.read())
        except (jose.DeserializationError, ValueError) as e:
            raise _Problem(400, "malformed", f"not a JWS: {e}")
        header = signed.signature.combined
        if header.url != BASE + path:
            raise _Problem(400, "malformed", f"JWS url {header.url} is not {BASE + path}")
        nonce = jose.b64encode(header.nonce).decode() if header.nonce else None
        if nonce not in self.nonces:
            raise _Problem(400, "badNonce", "JWS has an invalid anti-replay nonce")
        self.nonces.discard(nonce)
        if self.bad_nonces > 0:
            self.bad_nonces -= 1
            raise _Problem(400, "badNonce", "JWS has an invalid anti-replay nonce (injected)")
        if header.kid is not None:
            account = self.accounts.get(header.kid)
            if account is None:
                raise _Problem(400, "accountDoesNotExist", "no account with that kid")
            key = account["key"]
        elif header.jwk is not None:
            if path not in ("/new-account",):
                raise _Problem(400, "malformed", "only newAccount may be signed with a jwk")
            key, account = header.jwk, None
        else:
            raise _Problem(400, "malformed", "neither kid nor jwk")
        if not signed.verify(key):
            raise _Problem(400, "malformed", "JWS signature invalid")
        payload = json.loads(signed.payload) if signed.payload else None
        return payload, (account if account is not None else {"key": key})

    def _new_account(self, path, payload, account):
        thumb = jose.b64encode(account["key"].thumbprint()).decode()
        for kid, existing in self.accounts.items():
            if existing["thumb"] == thumb:
                return 200, {"status": "valid"}, {"Location": kid}
        if payload.get("onlyReturnExisting"):
            raise _Problem(400, "accountDoesNotExist", "no account for this key")
        if not payload.get("termsOfServiceAgreed"):
            raise _Problem(403, "userActionRequired", "terms of service not agreed")
        kid = f"{BASE}/acct/{next(self._counter)}"
        self.accounts[kid] = {"key": account["key"], "thumb": thumb, "contact": payload.get("contact")}
        return 201, {"status": "valid"}, {"Location": kid}

    def _new_order(self, path, payload, account):
        if self.reject_new_orders:
            status, code, detail, headers = self.reject_new_orders
            raise _Problem(status, code, detail, headers)
        replaces = payload.get("replaces")
        if replaces and replaces in self.already_replaced:
            raise _Problem(409, "alreadyReplaced", f"certificate {replaces} was already replaced")
        order_id = next(self._counter)
        authz_urls = []
        for identifier in payload["identifiers"]:
            authz_id = next(self._counter)
            name = identifier["value"]
            self.authzs[authz_id] = {
                "identifier": {"type": "dns", "value": name},
                "status": "pending",
                "expires": "2099-01-01T00:00:00Z",
                "_thumb": jose.b64encode(account["key"].thumbprint()).decode(),
                "challenges": [
                    {"type": "dns-01", "url": f"{BASE}/chall/{authz_id}/dns", "token": _token(), "status": "pending"},
                    {"type": "http-01", "url": f"{BASE}/chall/{authz_id}/http", "token": _token(), "status": "pending"},
                ],
            }
            authz_urls.append(f"{BASE}/authz/{authz_id}")
        order = {
            "status": "pending",
            "expires": "2099-01-01T00:00:00Z",
            "identifiers": payload["identifiers"],
            "authorizations": authz_urls,
            "finalize": f"{BASE}/finalize/{order_id}",
            "_account": account,
            "_replaces": replaces,
            "_profile": payload.get("profile"),
        }
        self.orders[order_id] = order
        return 201, self._order_json(order_id), {"Location": f"{BASE}/order/{order_id}"}

    def _order_json(self, order_id):
        order = self.orders[order_id]
        if order["status"] == "pending":
            statuses = [self.authzs[int(u.rsplit("/", 1)[1])]["status"] for u in order["authorizations"]]
            if any(s == "invalid" for s in statuses):
                order["status"] = "invalid"
                order["error"] = {"type": PROBLEM + "unauthorized", "detail": "an authorization failed"}
            elif all(s == "valid" for s in statuses):
                order["status"] = "ready"
        return {k: v for k, v in order.items() if not k.startswith("_")}

    def _owned(self, order_id, account):
        order = self.orders.get(order_id)
        if order is None or order["_account"]["key"] != account["key"]:
            raise _Problem(404, "malformed", "no such order for this account")
        return order

    def _order(self, path, payload, account):
        order_id = int(path.rsplit("/", 1)[1])
        order = self._owned(order_id, account)
        headers = {}
        if order["status"] == "processing":
            if self._processing_left.get(order_id, 0) > 0:
                self._processing_left[order_id] -= 1
                if self.processing_retry_after is not None:
                    headers["Retry-After"] = self.processing_retry_after
            else:
                self._issue(order_id)
        return 200, self._order_json(order_id), headers

    def _finalize(self, path, payload, account):
        order_id = int(path.rsplit("/", 1)[1])
        order = self._owned(order_id, account)
        self._order_json(order_id)
        if order["status"] != "ready":
            raise _Problem(403, "orderNotReady", f"order is {order['status']}")
        csr = x509.load_der_x509_csr(jose.b64decode(payload["csr"]))
        names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        wanted = [i["value"] for i in order["identifiers"]]
        if sorted(names) != sorted(wanted):
            raise _Problem(400, "badCSR", f"CSR names {names} do not match the order {wanted}")
        order["_csr"] = csr
        order["status"] = "processing"
        self._processing_left[order_id] = self.processing_polls
        if self.processing_polls == 0:
            self._issue(order_id)
        return 200, self._order_json(order_id), {"Location": f"{BASE}/order/{order_id}"}

    def _issue(self, order_id):
        order = self.orders[order_id]
        csr = order["_csr"]
        now = datetime.datetime.fromtimestamp(self.clock.seconds(), tz=datetime.timezone.utc)
        ca_key, ca_cert = self._ca
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, order["identifiers"][0]["value"])]))
            .issuer_name(ca_cert.subject).public_key(csr.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + self.lifetime)
            .add_extension(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_id = next(self._counter)
        self.certificates[cert_id] = cert
        order["status"] = "valid"
        order["certificate"] = f"{BASE}/cert/{cert_id}"

    def _certificate(self, path, payload, account):
        parts = path.split("/")
        cert = self.certificates[int(parts[2])]
        headers = {"Content-Type": "application/pem-certificate-chain"}
        if len(parts) > 3:
            _, alt_cert = self._alt_ca(int(parts[3]))
            return 200, (certificate_to_pem(cert) + certificate_to_pem(alt_cert)).encode(), headers
        links = [f'<{BASE}/cert/{parts[2]}/{i}>;rel="alternate"' for i in range(self.alternate_chains)]
        if links:
            headers["Link"] = ", ".join(links)
        return 200, (certificate_to_pem(cert) + certificate_to_pem(self._ca[1])).encode(), headers

    def _alt_ca(self, index):
        while len(self._alt_cas) <= index:
            self._alt_cas.append(_make_ca(f"Fake Alternate {len(self._alt_cas)}"))
        return self._alt_cas[index]

    def _authz(self, path, payload, account):
        authz_id = int(path.rsplit("/", 1)[1])
        authz = self.authzs[authz_id]
        if payload == {"status": "deactivated"}:
            authz["status"] = "deactivated"
        elif authz["status"] == "pending" and any(c["status"] == "processing" for c in authz["challenges"]):
            if self._pending_left.get(authz_id, 0) > 0:
                self._pending_left[authz_id] -= 1
            else:
                self._validate(authz)
        return 200, {k: v for k, v in authz.items() if not k.startswith("_")}, {}

    def _validate(self, authz):
        name = authz["identifier"]["value"]
        challenge = next(c for c in authz["challenges"] if c["status"] == "processing")
        failure = self.failures.get(name, False)
        if failure is False and self.responder is not None:
            expected = f"{challenge['token']}.{authz['_thumb']}"
            if self.responder.published.get((name, challenge["token"])) != expected:
                failure = {"type": PROBLEM + "unauthorized",
                           "detail": f"The key authorization file from the server did not match this challenge {expected!r}"}
        if failure is not False:
            challenge["status"] = "invalid"
            authz["status"] = "invalid"
            if failure is not None:
                challenge["error"] = failure
        else:
            challenge["status"] = "valid"
            authz["status"] = "valid"

    def _challenge(self, path, payload, account):
        _, _, authz_id, kind = path.split("/")
        authz = self.authzs[int(authz_id)]
        challenge = next(c for c in authz["challenges"] if c["url"].endswith(f"/{authz_id}/{kind}"))
        if payload == {} and challenge["status"] == "pending":
            challenge["status"] = "processing"
            self._pending_left[int(authz_id)] = self.pending_polls
        return 200, challenge, {"Link": f'<{BASE}/authz/{authz_id}>;rel="up"'}

    def _revoke(self, path, payload, account):
        cert = x509.load_der_x509_certificate(jose.b64decode(payload["certificate"]))
        if cert.serial_number in {c.serial_number for c in self.revoked}:
            raise _Problem(400, "alreadyRevoked", "certificate already revoked")
        self.revoked.append(cert)
        return 200, b"", {}

    def _renewal_info(self, cert_id):
        if not self.ari:
            raise _Problem(404, "malformed", "no ARI here")
        start, end = self.ari_window
        body = {"suggestedWindow": {"start": start, "end": end}, "explanationURL": f"{BASE}/why"}
        return 200, body, {"Retry-After": "21600"}


def http_date(moment: datetime.datetime) -> str:
    """An HTTP-date for C{Retry-After}."""
    return email.utils.format_datetime(moment.astimezone(datetime.timezone.utc), usegmt=True)
