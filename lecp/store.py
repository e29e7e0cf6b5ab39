# -*- test-case-name: tests.test_store -*-
"""
The user's certificate store: C{~/.cpanel/nvdata/letsencrypt-cpanel}, one JSON document in the
original plugin's layout (so servers moving from it keep their accounts, keys and certificates),
with lecp's own fields under C{lecp_*} keys. Keys lecp does not know are kept as they are.

Every write replaces the document atomically (0600, folders 0700); every read-modify-write
holds an exclusive C{flock} on C{letsencrypt-cpanel.lock} beside it, shared by the page, the
daemon's worker and the admin command. A document or lock that is a symlink, or not owned by
the user, is refused. A document that does not parse is kept as
C{letsencrypt-cpanel.corrupt-<timestamp>} and never silently replaced.

Deliberately free of Twisted and cryptography: the page imports this on every view.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time

import attrs

from lecp.fsutil import atomic_write_at

DOCUMENT = "letsencrypt-cpanel"
LOCK = DOCUMENT + ".lock"
SCHEMA = 1
NVDATA = (".cpanel", "nvdata")
LOCK_TIMEOUT = 30.0
BUSY_TIMEOUT = 30 * 60  # a job marker older than this is stale (its process died)
MAX_DOCUMENT = 32 * 1024 * 1024


class StoreError(Exception):
    """The store could not be used; the message says why and what to do."""


class UnsafeStore(StoreError):
    """The document, the lock or a folder is a symlink or belongs to someone else."""


class StoreCorrupted(StoreError):
    """The document did not parse; it was kept aside as C{kept_as}."""

    def __init__(self, message: str, kept_as: str):
        super().__init__(message)
        self.kept_as = kept_as


class StoreBusy(StoreError):
    """Another process held the lock for too long."""


@attrs.frozen
class CertRecord:
    """
    One virtual host's certificate, as the original plugin stored it (C{certs[vhost]}), plus
    lecp's facts (key type, issuer, validity, renewal state, the CA it came from).
    """

    vhost: str
    key_pem: str
    cert_pem: str
    chain_pem: str = ""
    order_url: str = ""
    cert_id: str = ""
    key_id: str = ""
    expiry: int = 0
    alt_names: tuple = ()
    challenge_method: str = "http-01"
    alternate_chains: dict = attrs.field(factory=dict)
    preferred_issuer: str = ""
    key_type: str = ""
    issuer: str = ""
    not_before: int = 0
    directory: str = ""
    renewal: dict = attrs.field(factory=dict)
    vhost_domains: tuple = ()
    ari_id: str = ""
    extra: dict = attrs.field(factory=dict)

    @property
    def names(self) -> list[str]:
        """The vhost's name first, then the other names, without repeats (old daemons repeated them)."""
        out = []
        for name in (self.vhost, *self.alt_names):
            if name and name not in out:
                out.append(name)
        return out

    @classmethod
    def from_json(cls, vhost: str, data: dict) -> "CertRecord":
        known = {"domain", "url", "key", "cert", "issuer", "key_id", "cert_id", "cert_expiry", "alt_names",
                 "challenge_method", "alternate_chains", "preferred_issuer", "lecp_key_type", "lecp_issuer",
                 "lecp_not_before", "lecp_directory", "lecp_renewal", "lecp_vhost_domains", "lecp_ari_id"}
        return cls(
            vhost=str(data.get("domain") or vhost),
            key_pem=str(data.get("key") or ""),
            cert_pem=str(data.get("cert") or ""),
            chain_pem=str(data.get("issuer") or ""),
            order_url=str(data.get("url") or ""),
            cert_id=str(data.get("cert_id") or ""),
            key_id=str(data.get("key_id") or ""),
            expiry=int(data.get("cert_expiry") or 0),
            alt_names=tuple(str(n) for n in data.get("alt_names") or ()),
            challenge_method=str(data.get("challenge_method") or "http-01"),
            alternate_chains=dict(data.get("alternate_chains") or {}),
            preferred_issuer=str(data.get("preferred_issuer") or ""),
            key_type=str(data.get("lecp_key_type") or ""),
            issuer=str(data.get("lecp_issuer") or ""),
            not_before=int(data.get("lecp_not_before") or 0),
            directory=str(data.get("lecp_directory") or ""),
            renewal=dict(data.get("lecp_renewal") or {}),
            vhost_domains=tuple(str(d) for d in data.get("lecp_vhost_domains") or ()),
            ari_id=str(data.get("lecp_ari_id") or ""),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_json(self) -> dict:
        data = dict(self.extra)
        data.update({
            "domain": self.vhost, "url": self.order_url, "key": self.key_pem, "cert": self.cert_pem,
            "issuer": self.chain_pem, "key_id": self.key_id, "cert_id": self.cert_id, "cert_expiry": self.expiry,
            "alt_names": [n for n in self.alt_names if n != self.vhost], "challenge_method": self.challenge_method,
            "alternate_chains": self.alternate_chains, "preferred_issuer": self.preferred_issuer,
            "lecp_key_type": self.key_type, "lecp_issuer": self.issuer, "lecp_not_before": self.not_before,
            "lecp_directory": self.directory, "lecp_renewal": self.renewal,
            "lecp_vhost_domains": list(self.vhost_domains), "lecp_ari_id": self.ari_id,
        })
        return data


@attrs.frozen
class PendingOrder:
    """An order the CA had not finished when the caller stopped waiting: resumed later with the same key."""

    vhost: str
    order_url: str
    key_pem: str
    names: tuple
    key_type: str
    directory: str
    created: int
    retry_after: int = 0
    attempts: int = 0
    last_error: str = ""
    renewal: bool = False

    @classmethod
    def from_json(cls, vhost: str, data: dict) -> "PendingOrder":
        return cls(
            vhost=vhost, order_url=str(data.get("order_url", "")), key_pem=str(data.get("key", "")),
            names=tuple(data.get("names") or ()), key_type=str(data.get("key_type", "")),
            directory=str(data.get("directory", "")), created=int(data.get("created") or 0),
            retry_after=int(data.get("retry_after") or 0), attempts=int(data.get("attempts") or 0),
            last_error=str(data.get("last_error") or ""), renewal=bool(data.get("renewal", False)),
        )

    def to_json(self) -> dict:
        return {"order_url": self.order_url, "key": self.key_pem, "names": list(self.names), "key_type": self.key_type,
                "directory": self.directory, "created": self.created, "retry_after": self.retry_after,
                "attempts": self.attempts, "last_error": self.last_error, "renewal": self.renewal}


@attrs.define
class Document:
    """The parsed document: typed accessors over the JSON, which keeps every key it had."""

    raw: dict = attrs.field(factory=dict)

    # The ACME account

    @property
    def account_key_pem(self) -> str:
        return str(self.raw.get("accountkey") or "")

    @account_key_pem.setter
    def account_key_pem(self, pem: str) -> None:
        self.raw["accountkey"] = pem

    def account_url(self, directory: str) -> str | None:
        return (self.raw.get("lecp_accounts") or {}).get(directory)

    def set_account_url(self, directory: str, url: str | None) -> None:
        accounts = dict(self.raw.get("lecp_accounts") or {})
        if url:
            accounts[directory] = url
        else:
            accounts.pop(directory, None)
        self.raw["lecp_accounts"] = accounts

    # Certificates

    def certificates(self) -> dict[str, CertRecord]:
        return {v: CertRecord.from_json(v, d) for v, d in (self.raw.get("certs") or {}).items() if isinstance(d, dict)}

    def certificate(self, vhost: str) -> CertRecord | None:
        data = (self.raw.get("certs") or {}).get(vhost)
        return CertRecord.from_json(vhost, data) if isinstance(data, dict) else None

    def put_certificate(self, record: CertRecord) -> None:
        certs = self.raw.setdefault("certs", {})
        certs[record.vhost] = record.to_json()

    def remove_certificate(self, vhost: str) -> CertRecord | None:
        record = self.certificate(vhost)
        (self.raw.get("certs") or {}).pop(vhost, None)
        return record

    # Re-use: target vhost -> source vhost

    def reuses(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.raw.get("cert_reuses") or {}).items()}

    def set_reuse(self, target: str, source: str | None) -> None:
        reuses = self.raw.setdefault("cert_reuses", {})
        if source is None:
            reuses.pop(target, None)
        else:
            reuses[target] = source

    def reuse_targets(self, source: str) -> list[str]:
        return sorted(t for t, s in self.reuses().items() if s == source)

    # Deferred orders

    def pending(self) -> dict[str, PendingOrder]:
        return {v: PendingOrder.from_json(v, d) for v, d in (self.raw.get("lecp_pending") or {}).items() if isinstance(d, dict)}

    def put_pending(self, order: PendingOrder) -> None:
        self.raw.setdefault("lecp_pending", {})[order.vhost] = order.to_json()

    def remove_pending(self, vhost: str) -> PendingOrder | None:
        order = self.pending().get(vhost)
        (self.raw.get("lecp_pending") or {}).pop(vhost, None)
        return order

    # The last failure of a job per vhost, for the page: cleared by the next success

    def failure(self, vhost: str) -> dict | None:
        failure = (self.raw.get("lecp_failures") or {}).get(vhost)
        return failure if isinstance(failure, dict) else None

    def set_failure(self, vhost: str, failure: dict | None) -> None:
        failures = self.raw.setdefault("lecp_failures", {})
        if failure is None:
            failures.pop(vhost, None)
        else:
            failures[vhost] = failure

    # Jobs running for a vhost: one at a time

    def job(self, vhost: str, now: float) -> dict | None:
        """The job running for C{vhost}, unless its marker is stale (old, or its process is gone)."""
        job = (self.raw.get("lecp_jobs") or {}).get(vhost)
        if not isinstance(job, dict):
            return None
        if now - float(job.get("since", 0)) > BUSY_TIMEOUT or not _alive(int(job.get("pid", 0))):
            return None
        return job

    def start_job(self, vhost: str, kind: str, now: float, pid: int | None = None) -> None:
        self.raw.setdefault("lecp_jobs", {})[vhost] = {"kind": kind, "since": now, "pid": pid or os.getpid()}

    def end_job(self, vhost: str) -> None:
        (self.raw.get("lecp_jobs") or {}).pop(vhost, None)

    # Settings

    @property
    def disable_mail(self) -> bool:
        return bool(self.raw.get("disable_mail", False))

    @disable_mail.setter
    def disable_mail(self, value: bool) -> None:
        self.raw["disable_mail"] = bool(value)

    @property
    def last_renewal_check(self) -> int:
        return int(self.raw.get("last_renewal_check") or 0)

    def csrf_secret(self) -> str | None:
        return self.raw.get("lecp_csrf_secret")

    def ensure_csrf_secret(self) -> str:
        if not self.raw.get("lecp_csrf_secret"):
            import secrets

            self.raw["lecp_csrf_secret"] = secrets.token_urlsafe(32)
        return self.raw["lecp_csrf_secret"]

    def serialise(self) -> bytes:
        self.raw["lecp_schema"] = SCHEMA
        return json.dumps(self.raw, indent=1, sort_keys=True).encode()


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def parse_document(data: bytes) -> Document:
    """
    A document from its bytes; an empty file is an empty document (cPanel's NVData reads empty
    as null).

    @raise ValueError: when it is not a JSON object.
    """
    if not data.strip():
        return Document()
    raw = json.loads(data)
    if not isinstance(raw, dict):
        raise ValueError("the document is not a JSON object")
    if not isinstance(raw.get("certs", {}), dict):
        raise ValueError("'certs' is not an object")
    return Document(raw)


@attrs.define
class Store:
    """
    The document of the user whose home is C{home}, opened as that user (C{uid}, the effective
    uid by default). Root never uses this: it reads through L{lecp.saferead}.
    """

    home: str
    uid: int = attrs.field(factory=os.geteuid)
    clock: object = time.time

    @property
    def folder(self) -> str:
        return os.path.join(self.home, *NVDATA)

    @property
    def path(self) -> str:
        return os.path.join(self.folder, DOCUMENT)

    def _open_folder(self, create: bool) -> int | None:
        """The nvdata folder, walked from the home without following symlinks; created 0700 if asked."""
        fd = os.open(self.home, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in NVDATA:
                try:
                    child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        return None
                    try:
                        os.mkdir(part, 0o700, dir_fd=fd)
                    except FileExistsError:
                        pass
                    child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise UnsafeStore(f"{os.path.join(self.home, *NVDATA[:NVDATA.index(part) + 1])} is a symlink "
                                          "or not a folder; lecp will not use it. Replace it with a real folder") from None
                    raise
                os.close(fd)
                fd = child
                self._check_owner(fd, os.path.join(self.home, *NVDATA[: NVDATA.index(part) + 1]))
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _check_owner(self, fd: int, where: str) -> None:
        owner = os.fstat(fd).st_uid
        if owner != self.uid:
            raise UnsafeStore(f"{where} belongs to uid {owner}, not to this account (uid {self.uid}); "
                              "lecp will not use it. Ask the server's administrator to fix its owner")

    def _open_file(self, dir_fd: int, name: str, flags: int, mode: int = 0o600) -> int:
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW, mode, dir_fd=dir_fd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise UnsafeStore(f"{os.path.join(self.folder, name)} is a symlink; lecp will not follow it. "
                                  "Remove the link") from None
            raise
        try:
            self._check_owner(fd, os.path.join(self.folder, name))
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _read(self, dir_fd: int) -> Document:
        try:
            fd = self._open_file(dir_fd, DOCUMENT, os.O_RDONLY)
        except FileNotFoundError:
            return Document()
        try:
            data = os.read(fd, MAX_DOCUMENT + 1)
        finally:
            os.close(fd)
        try:
            if len(data) > MAX_DOCUMENT:
                raise ValueError("the document is larger than 32 MiB")
            return parse_document(data)
        except ValueError as e:
            kept = f"{DOCUMENT}.corrupt-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(self.clock()))}"
            os.rename(DOCUMENT, kept, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.fsync(dir_fd)
            raise StoreCorrupted(
                f"The lecp data of this account ({self.path}) could not be read ({e}). It was kept as "
                f"{os.path.join(self.folder, kept)} and lecp starts a new one; certificates already installed "
                "in cPanel keep working. Issue them again here to have them renewed automatically.",
                os.path.join(self.folder, kept),
            ) from None

    def read(self) -> Document:
        """The document as it is now (no lock: writes are atomic renames)."""
        dir_fd = self._open_folder(create=False)
        if dir_fd is None:
            return Document()
        try:
            return self._read(dir_fd)
        finally:
            os.close(dir_fd)

    def update(self) -> "_Update":
        """
        C{with store.update() as document:} locks, reads, lets the caller change the document,
        and writes it back atomically if it changed (not if the block raised). Keep the block
        short: never wait on the network inside it.
        """
        return _Update(self)

    def _lock(self, fd: int) -> None:
        deadline = time.monotonic() + LOCK_TIMEOUT
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreBusy(f"another lecp operation on this account held its data for over {LOCK_TIMEOUT:g} s; "
                                    "try again in a minute") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)


def _sweep_temporaries(dir_fd: int) -> None:
    """
    Remove the temporary copies of the document left by a writer that died between naming and
    renaming one, or while writing one where the filesystem has no unnamed files (they hold
    private keys; see L{atomic_write_at}). Called with the lock held: every writer holds it, so
    any temporary copy present belongs to a writer that is gone.
    """
    prefix = f".{DOCUMENT}."
    for name in os.listdir(dir_fd):
        if name.startswith(prefix) and name.endswith(".tmp"):
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                pass


class _Update:
    """The context manager of L{Store.update} (a class: contextlib costs a page view 10 ms)."""

    def __init__(self, store: Store):
        self.store = store
        self.dir_fd = self.lock = None

    def __enter__(self) -> Document:
        self.dir_fd = self.store._open_folder(create=True)
        try:
            self.lock = self.store._open_file(self.dir_fd, LOCK, os.O_RDWR | os.O_CREAT)
            self.store._lock(self.lock)
            _sweep_temporaries(self.dir_fd)
            self.document = self.store._read(self.dir_fd)
        except BaseException:
            self._close()
            raise
        self.before = json.dumps(self.document.raw, sort_keys=True)
        return self.document

    def __exit__(self, kind, value, traceback):
        try:
            if kind is None and json.dumps(self.document.raw, sort_keys=True) != self.before:
                atomic_write_at(self.dir_fd, DOCUMENT, self.document.serialise(), 0o600)
        finally:
            self._close()
        return False

    def _close(self) -> None:
        if self.lock is not None:
            os.close(self.lock)  # releases the flock
            self.lock = None
        if self.dir_fd is not None:
            os.close(self.dir_fd)
            self.dir_fd = None
