# -*- test-case-name: tests.test_acme_client -*-
"""
lecp's ACME v2 client (RFC 8555, RFC 9773 ARI): accounts, orders, HTTP-01, finalize, polling,
chains, resume, revocation, deactivation.

The order state machine that L{ACMEClient.drive} walks, from any state (which is what makes
resuming a deferred order the same code as issuing)::

    pending ──(authorizations valid)──> ready ──(finalize)──> processing ──> valid ──> download
       │                                                          │
       └────────────────────> invalid <───────────────────────────┘

Polling honours C{Retry-After} (seconds or HTTP-date); without it, it takes a first look after
50 ms, then backs off from 0.25 s, doubling, to a 10 s cap; it stops at the caller's deadline,
handing back the order URL (L{PendingOrder}) so the caller can resume later.
"""

from __future__ import annotations

import datetime
import random

import attrs
import josepy as jose
from acme import challenges, messages
from cryptography import x509
from twisted.internet.defer import Deferred, FirstError, gatherResults, maybeDeferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from lecp.acme.errors import (
    AccountDoesNotExist,
    ACMEProblem,
    ACMEProtocolError,
    AuthorizationFailed,
    NoSupportedChallenge,
    OrderFailed,
    ValidationFailed,
)
from lecp.acme.transport import JWSTransport, Response, parse_retry_after, utc_now
from lecp.keys import key_type_of

log = Logger()

# Delays between polls when the CA sends no Retry-After: quick looks first (50 ms, then 0.1 s,
# 0.2 s... : a fast CA, like Pebble without its sleeps, is done within a few hundred ms), then
# once a second for ten seconds (a validation usually takes 1-4 s: doubling all along would see one
# done at 3.2 s only at 6.4 s), then doubling up to the cap. After the first second, that is one
# request a second at most, as certbot polls.
ORDER_POLL_DELAYS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75) + (1.0,) * 10
AUTHZ_POLL_DELAYS = ORDER_POLL_DELAYS
POLL_CAP = 10.0
DEFAULT_DEADLINE = 90.0
PEM_CHAIN_TYPE = "application/pem-certificate-chain"


class NewOrderARI(messages.NewOrder):
    """C{newOrder} with RFC 9773's C{replaces}, which acme's own message lacks."""

    replaces: str = jose.field("replaces", omitempty=True)


def jwk_and_alg(private_key) -> tuple[jose.JWK, jose.JWASignature]:
    """The josepy JWK and JWS algorithm for an account key."""
    key_type = key_type_of(private_key)
    if key_type.algorithm == "rsa":
        return jose.JWKRSA(key=private_key), jose.RS256
    alg = {"p-256": jose.ES256, "p-384": jose.ES384}[key_type.parameter]
    return jose.JWKEC(key=private_key), alg


@attrs.frozen
class Order:
    """An order as last seen: its URL, the parsed body, and the server's C{Retry-After}."""

    url: str
    body: messages.Order
    retry_after: datetime.datetime | None = None

    @property
    def status(self) -> str:
        return self.body.status.name

    @property
    def names(self) -> list[str]:
        return [i.value for i in self.body.identifiers or ()]

    def problem(self) -> ACMEProblem | None:
        if self.body.error is None:
            return None
        return ACMEProblem.from_json(self.body.error.to_partial_json(), url=self.url)


@attrs.frozen
class IssuedCertificate:
    """A certificate the CA issued: the chain it sent first, and the alternates it offered."""

    order_url: str
    fullchain_pem: str
    alternate_chains: tuple[str, ...] = ()


@attrs.frozen
class PendingOrder:
    """The deadline passed before the order was finished; resume it later from C{order_url}."""

    order_url: str
    status: str
    retry_after: datetime.datetime | None = None


@attrs.frozen
class RenewalWindow:
    """An ARI answer: the suggested window, the explanation URL, and when to ask again."""

    start: datetime.datetime
    end: datetime.datetime
    explanation_url: str | None
    retry_after: datetime.datetime | None

    def pick_time(self, rng: random.Random | None = None) -> datetime.datetime:
        """A uniformly random moment in the window (RFC 9773 §4.2)."""
        rng = rng or random.Random()
        span = max((self.end - self.start).total_seconds(), 0.0)
        return self.start + datetime.timedelta(seconds=rng.uniform(0, span))


@attrs.define
class _Backoff:
    """
    Waits between polls: the server's Retry-After, or the next of C{delays} and then doubling
    delays up to a cap.
    """

    clock: object
    deadline: float
    delays: tuple
    cap: float = POLL_CAP
    _step: int = 0

    def _next_delay(self) -> float:
        if self._step < len(self.delays):
            delay = self.delays[self._step]
        else:
            delay = min(self.delays[-1] * 2 ** (self._step - len(self.delays) + 1), self.cap)
        self._step += 1
        return delay

    async def wait(self, retry_after: datetime.datetime | None) -> bool:
        """Sleep until the next poll; C{False} (without sleeping) when that would pass the deadline."""
        now = self.clock.seconds()
        delay = self._next_delay()
        if retry_after is not None:
            delay = max(retry_after.timestamp() - now, delay)
        if now + delay > self.deadline:
            return False
        await deferLater(self.clock, delay, lambda: None)
        return True


@attrs.define
class ACMEClient:
    """
    Talks to one ACME server with one account key.

    Build it with L{ACMEClient.create}; call L{ensure_account} before ordering.

    @ivar directory_url: the server's directory.
    @ivar account_url: the account's URL, once known (persist it).
    @ivar contact_email: the address given when an account is created.
    """

    _transport: JWSTransport
    _clock: object
    directory_url: str
    contact_email: str | None = None
    _directory: dict | None = None

    @classmethod
    def create(cls, http, clock, directory_url, account_key, account_url=None, contact_email=None, timeout=30.0):
        """
        A client for C{directory_url} using C{account_key} (a cryptography private key).

        @param http: a treq-compatible HTTP client.
        @param clock: the C{IReactorTime} used for timeouts and polling.
        """
        jwk, alg = jwk_and_alg(account_key)
        transport = JWSTransport(http, clock, key=jwk, alg=alg, kid=account_url, timeout=timeout)
        return cls(transport, clock, directory_url, contact_email=contact_email)

    @property
    def account_url(self) -> str | None:
        return self._transport.kid

    @property
    def account_jwk(self) -> jose.JWK:
        return self._transport.key

    @property
    def requests_sent(self) -> int:
        """How many HTTP requests this client has made (for benchmarks and tests)."""
        return self._transport.requests_sent

    @property
    def bad_nonces_retried(self) -> int:
        """How many badNonce answers were absorbed by retrying."""
        return self._transport.bad_nonces_retried

    def _now(self) -> datetime.datetime:
        return utc_now(self._clock)

    async def directory(self) -> dict:
        """The directory object, fetched once."""
        if self._directory is None:
            response = await self._transport.get(self.directory_url)
            directory = response.json()
            for key in ("newNonce", "newAccount", "newOrder"):
                if not isinstance(directory.get(key), str):
                    raise ACMEProtocolError(self.directory_url, f"the directory has no {key} URL")
            self._directory = directory
            self._transport.new_nonce_url = directory["newNonce"]
        return self._directory

    async def profiles(self) -> dict:
        """The profiles the CA offers (name → description); empty when it offers none."""
        meta = (await self.directory()).get("meta") or {}
        profiles = meta.get("profiles") or {}
        return profiles if isinstance(profiles, dict) else {}

    # Accounts

    async def _new_account(self, payload: dict) -> Response:
        directory = await self.directory()
        return await self._transport.post(directory["newAccount"], payload, use_jwk=True)

    async def register(self) -> str:
        """
        Create the account for this key, agreeing to the terms (or find it, if it exists).

        @return: the account URL.
        """
        payload = {"termsOfServiceAgreed": True}
        if self.contact_email:
            payload["contact"] = [f"mailto:{self.contact_email}"]
        response = await self._new_account(payload)
        if not response.location:
            raise ACMEProtocolError(response.url, "the newAccount answer has no Location header")
        self._transport.kid = response.location
        log.info("ACME account {account_url} ready ({code})", account_url=response.location, code=response.code)
        return response.location

    async def find_account(self) -> str | None:
        """The URL of the existing account for this key (C{onlyReturnExisting}), or C{None}."""
        try:
            response = await self._new_account({"onlyReturnExisting": True})
        except AccountDoesNotExist:
            return None
        if not response.location:
            raise ACMEProtocolError(response.url, "the newAccount answer has no Location header")
        self._transport.kid = response.location
        return response.location

    async def ensure_account(self) -> str:
        """The account URL: the known one, else the key's existing account, else a new one."""
        if self.account_url:
            return self.account_url
        return await self.register()

    async def _post(self, url: str, payload=None) -> Response:
        """A signed request; if the CA lost the account, register again and retry once."""
        await self.directory()
        try:
            return await self._transport.post(url, payload)
        except AccountDoesNotExist:
            log.warn("The CA no longer knows account {account_url}; registering again", account_url=self.account_url)
            self._transport.kid = None
            await self.register()
            return await self._transport.post(url, payload)

    # Orders

    def _order_from(self, response: Response, url: str) -> Order:
        try:
            body = messages.Order.from_json(response.json())
        except jose.DeserializationError as e:
            raise ACMEProtocolError(url, f"the order does not parse ({e})") from None
        retry_after = parse_retry_after(response.header("retry-after"), self._now())
        return Order(url=url, body=body, retry_after=retry_after)

    async def new_order(self, names: list[str], profile: str | None = None, replaces: str | None = None) -> Order:
        """
        Ask for a certificate for C{names}.

        @param profile: asked for only when the CA lists it (else logged and left out).
        @param replaces: the ARI CertID of the certificate this one renews; dropped and retried
            once if the CA says it was already replaced.
        """
        identifiers = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in names]
        fields = {"identifiers": identifiers}
        if profile:
            if profile in await self.profiles():
                fields["profile"] = profile
            else:
                log.info("The CA does not offer profile {profile}; ordering without it", profile=profile)
        if replaces:
            fields["replaces"] = replaces
        directory = await self.directory()
        try:
            response = await self._post(directory["newOrder"], NewOrderARI(**fields))
        except ACMEProblem as e:
            if replaces and (e.code == "alreadyReplaced" or (e.code == "malformed" and "replace" in e.detail.lower())):
                log.info("The CA refused replaces={replaces} ({detail}); ordering without it", replaces=replaces, detail=e.detail)
                return await self.new_order(names, profile=profile)
            raise
        if not response.location:
            raise ACMEProtocolError(response.url, "the newOrder answer has no Location header")
        return self._order_from(response, response.location)

    async def fetch_order(self, order_url: str) -> Order:
        """The order's current state."""
        return self._order_from(await self._post(order_url), order_url)

    async def fetch_authorization(self, url: str) -> messages.Authorization:
        """An authorization's current state."""
        response = await self._post(url)
        try:
            return messages.Authorization.from_json(response.json())
        except jose.DeserializationError as e:
            raise ACMEProtocolError(url, f"the authorization does not parse ({e})") from None

    async def answer_challenge(self, challenge_url: str) -> None:
        """Tell the CA the challenge is ready to be validated."""
        await self._post(challenge_url, {})

    async def finalize(self, order: Order, csr: x509.CertificateSigningRequest) -> Order:
        """Send the CSR of a C{ready} order; returns the order as the CA then reports it."""
        try:
            response = await self._post(order.body.finalize, messages.CertificateRequest(csr=csr))
        except ACMEProblem as e:
            if e.code == "orderNotReady":
                return await self.fetch_order(order.url)
            raise
        return self._order_from(response, order.url)

    async def download(self, certificate_url: str, order_url: str) -> IssuedCertificate:
        """The issued chain, and every alternate chain the CA links to."""
        response = await self._post(certificate_url)
        fullchain = self._pem_chain(response)
        alternates = []
        for url in response.links("alternate"):
            alternates.append(self._pem_chain(await self._post(url)))
        return IssuedCertificate(order_url=order_url, fullchain_pem=fullchain, alternate_chains=tuple(alternates))

    @staticmethod
    def _pem_chain(response: Response) -> str:
        text = response.body.decode("ascii", "replace")
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise ACMEProtocolError(response.url, f"expected a PEM chain, got {response.content_type or 'no type'}")
        return text

    async def revoke(self, certificate: x509.Certificate, reason: int = 0) -> None:
        """Revoke C{certificate} (signed by the account that ordered it)."""
        directory = await self.directory()
        await self._post(directory["revokeCert"], messages.Revocation(certificate=certificate, reason=reason))

    async def deactivate_authorization(self, url: str) -> None:
        """Deactivate one authorization."""
        await self._post(url, messages.UpdateAuthorization(status=messages.STATUS_DEACTIVATED))

    async def abandon(self, order_url: str) -> int:
        """Deactivate the pending authorizations of an order that will not be finished; returns how many."""
        order = await self.fetch_order(order_url)
        count = 0
        for url in order.body.authorizations:
            authz = await self.fetch_authorization(url)
            if authz.status == messages.STATUS_PENDING:
                await self.deactivate_authorization(url)
                count += 1
        return count

    async def renewal_info(self, cert_id: str) -> RenewalWindow | None:
        """The ARI window for a certificate (by its CertID), or C{None} when the CA has no ARI."""
        base = (await self.directory()).get("renewalInfo")
        if not base or not cert_id:
            return None
        response = await self._transport.get(f"{base.rstrip('/')}/{cert_id}")
        body = response.json()
        window = body.get("suggestedWindow") or {}
        try:
            start = messages.RenewalInfo.SuggestedWindow.from_json(window)
        except jose.DeserializationError as e:
            raise ACMEProtocolError(response.url, f"the renewal info does not parse ({e})") from None
        if start.start is None or start.end is None or start.end < start.start:
            raise ACMEProtocolError(response.url, "the renewal info has no usable suggestedWindow")
        return RenewalWindow(
            start=start.start,
            end=start.end,
            explanation_url=body.get("explanationURL"),
            retry_after=parse_retry_after(response.header("retry-after"), self._now()),
        )

    # The state machine

    async def issue(self, names, csr, responder, deadline=None, profile=None, replaces=None):
        """
        Order, validate, finalize and download a certificate for C{names}.

        @param deadline: clock time after which polling stops and a L{PendingOrder} is returned.
        @return: L{IssuedCertificate} or L{PendingOrder}.
        @raise ValidationFailed: when a name could not be validated.
        @raise OrderFailed: when the CA made the order invalid.
        """
        await self.ensure_account()
        order = await self.new_order(names, profile=profile, replaces=replaces)
        log.info("Ordered {names} as {order_url}", names=names, order_url=order.url)
        return await self.drive(order, csr, responder, deadline)

    async def resume(self, order_url, csr, responder, deadline=None):
        """Pick up an order in any state and take it as far as the deadline allows."""
        await self.ensure_account()
        return await self.drive(await self.fetch_order(order_url), csr, responder, deadline)

    async def drive(self, order: Order, csr, responder, deadline=None):
        """Walk C{order} through its states; see the module docstring."""
        if deadline is None:
            deadline = self._clock.seconds() + DEFAULT_DEADLINE
        published = []
        backoff = _Backoff(self._clock, deadline, ORDER_POLL_DELAYS)
        try:
            while True:
                status = order.status
                if status == "valid":
                    if not order.body.certificate:
                        raise ACMEProtocolError(order.url, "the order is valid but has no certificate URL")
                    return await self.download(order.body.certificate, order.url)
                if status == "invalid":
                    await self._raise_for_invalid(order)
                if status == "ready":
                    order = await self.finalize(order, csr)
                    continue
                if status == "pending":
                    finished = await self._validate(order, responder, deadline, published)
                    if not finished:
                        return PendingOrder(order.url, "pending", order.retry_after)
                    order = await self.fetch_order(order.url)
                    if order.status != "pending":
                        continue
                elif status != "processing":
                    raise ACMEProtocolError(order.url, f"unexpected order status {status!r}")
                if not await backoff.wait(order.retry_after):
                    return PendingOrder(order.url, order.status, order.retry_after)
                order = await self.fetch_order(order.url)
        finally:
            for identifier, token in published:
                try:
                    await maybeDeferred(responder.stop_responding, identifier, token)
                except Exception:
                    log.failure("Could not remove the challenge for {identifier}", identifier=identifier)

    async def _raise_for_invalid(self, order: Order):
        failures = []
        for url in order.body.authorizations:
            authz = await self.fetch_authorization(url)
            if authz.status == messages.STATUS_INVALID:
                failures.append(self._failure_of(url, authz))
        if failures:
            raise ValidationFailed(order.url, failures)
        raise OrderFailed(order.url, order.problem())

    def _failure_of(self, url: str, authz: messages.Authorization) -> AuthorizationFailed:
        name = authz.identifier.value
        problem, validation_url = None, None
        for challb in authz.challenges:
            if challb.error is not None or challb.status == messages.STATUS_INVALID:
                if challb.error is not None:
                    problem = ACMEProblem.from_json(challb.error.to_partial_json(), url=challb.uri)
                if isinstance(challb.chall, challenges.HTTP01):
                    validation_url = challb.chall.uri(name)
                break
        return AuthorizationFailed(identifier=name, authorization_url=url, problem=problem, validation_url=validation_url)

    async def _validate(self, order: Order, responder, deadline: float, published: list) -> bool:
        """Publish and answer every pending challenge, then poll until all are valid (C{True}) or time is up."""
        urls = list(order.body.authorizations)
        authzs = await self._gather([self.fetch_authorization(u) for u in urls])
        pending = {}
        for url, authz in zip(urls, authzs):
            if authz.status == messages.STATUS_VALID:
                continue
            if authz.status != messages.STATUS_PENDING:
                if authz.status == messages.STATUS_INVALID:
                    raise ValidationFailed(order.url, [self._failure_of(url, authz)])
                raise ValidationFailed(order.url, [AuthorizationFailed(authz.identifier.value, url)])
            challb = self._pick_challenge(authz, responder.challenge_type)
            name = authz.identifier.value
            token = challb.chall.encode("token")
            await maybeDeferred(responder.start_responding, name, token, challb.chall.validation(self.account_jwk))
            published.append((name, token))
            if challb.status == messages.STATUS_PENDING:
                await self.answer_challenge(challb.uri)
            pending[url] = authz
        backoff = _Backoff(self._clock, deadline, AUTHZ_POLL_DELAYS)
        while pending:
            results = await self._gather([self.fetch_authorization(u) for u in pending])
            failures = []
            for url, value in zip(list(pending), results):
                if value.status == messages.STATUS_VALID:
                    del pending[url]
                elif value.status != messages.STATUS_PENDING:
                    failures.append(self._failure_of(url, value))
            if failures:
                raise ValidationFailed(order.url, failures)
            if pending and not await backoff.wait(None):
                return False
        return True

    @staticmethod
    def _pick_challenge(authz: messages.Authorization, challenge_type: str) -> messages.ChallengeBody:
        for challb in authz.challenges:
            if challb.chall.typ == challenge_type:
                return challb
        raise NoSupportedChallenge(authz.identifier.value, tuple(c.chall.typ for c in authz.challenges))

    @staticmethod
    async def _gather(coroutines) -> list:
        """Run coroutines concurrently; raise the first failure itself (not wrapped in FirstError)."""
        try:
            return await gatherResults([Deferred.fromCoroutine(c) for c in coroutines], consumeErrors=True)
        except FirstError as e:
            e.subFailure.raiseException()
