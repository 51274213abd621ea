"""Which store a mirror keeps: found by the id it was given or recorded, or created once.

``StoreKeeper.resolve`` starts each vector store step (``syncd.sync.vectors``):

- ``vector_store_id``: retrieved; a 404 is one clear error ("does not exist"), the store's
  rows are dropped (old versions kept for it retired) and nothing is tried again until
  the config changes.
- ``vector_store = NAME``: the id the ledger recorded, retrieved; else a new store. The
  create is an intent first (``creating``, with a nonce), the nonce goes into the new
  store's metadata beside the ledger's owner tag; after a lost answer (or a crash) the
  store is found by that nonce (``list_stores``) -- never by its name -- and a second
  store the same request made is deleted (provably syncd's). A store syncd made that
  was deleted under its feet is made again, with a warning naming the old id.
- A store with an ``expires_after`` is warned about (idle that long, it expires, and the
  index with it); an expired one is an error. What the store looked like (counts,
  usage, expiry) is kept in the ledger for ``syncd status``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence

import structlog

from syncd.errors import AmbiguousError, FatalError, NotFoundError, RemoteError, StoreGone
from syncd.remote.vector_stores import VectorStoresApi
from syncd.state.vector_ledger import StoreRow, VectorLedger, dumps
from syncd.sync.steps import StepHook
from syncd.sync.vector_report import VectorReport
from syncd.vector_api import META_NONCE, META_OWNER, VectorStore
from syncd.vector_config import VectorConfig

log = structlog.get_logger(__name__)


class StoreKeeper:
    """Resolves the configured store (module docstring). ``vanished(store_id)`` is
    called when a store is known to be gone, so its rows can be settled."""

    def __init__(
        self,
        config: VectorConfig,
        vl: VectorLedger,
        api: VectorStoresApi,
        *,
        clock: Callable[[], float],
        step: StepHook,
        vanished: Callable[[str], None],
    ) -> None:
        self.config = config
        self.vl = vl
        self.api = api
        self.clock = clock
        self.step = step
        self.vanished = vanished
        self.retry = True  # after resolve() gave None: whether trying again may help

    @property
    def key(self) -> str:
        """The ledger's key of the configured store: ``id:vs_...`` or ``name:NAME``."""
        config = self.config
        return f"id:{config.store_id}" if config.store_id else f"name:{config.name}"

    def resolve(self, owner: str, report: VectorReport) -> VectorStore | None:
        """The store to keep, or None (with the reason in ``report.errors``)."""
        self.retry = True
        config, key = self.config, self.key
        for other in self.vl.stores():
            if other.key != key:  # a store the config no longer names: not shown any more
                self.vl.forget_store_key(other.key)
        row = self.vl.store(key)
        try:
            if config.store_id:
                return self._given(config.store_id, report)
            if row is not None and row.state == "ready" and row.store_id:
                try:
                    store = self.api.retrieve_store(row.store_id)
                except NotFoundError:
                    report.warnings.append(
                        f"vector store {row.store_id} ({config.name!r}), which syncd created, "
                        "was deleted outside syncd; creating a new one and attaching every "
                        "file again"
                    )
                    self.vanished(row.store_id)
                else:
                    return self._checked(store, report)
            return self._create(row, owner, report)
        except FatalError:
            raise
        except RemoteError as exc:
            report.errors.append(f"cannot reach the store ({exc}); tried again later")
            self.vl.store_problem(key, str(exc), gone=False, now=self.clock())
            return None

    def refresh(self, store: VectorStore, report: VectorReport) -> VectorStore:
        """The store retrieved again after a step changed it (usage, counts for status)."""
        try:
            store = self.api.retrieve_store(store.id)
        except NotFoundError as exc:
            raise StoreGone from exc
        self.vl.store_checked(self.key, status_json(store), now=self.clock())
        report.usage_bytes = store.usage_bytes
        report.expires_at = store.expires_at
        return store

    def _given(self, store_id: str, report: VectorReport) -> VectorStore | None:
        try:
            store = self.api.retrieve_store(store_id)
        except NotFoundError:
            problem = (
                "does not exist (a wrong vector_store_id, or the store was deleted); nothing "
                "is attached until the config names a store that exists"
            )
            report.errors.append(problem)
            self.vl.store_problem(self.key, problem, gone=True, now=self.clock())
            self.vanished(store_id)
            self.retry = False
            return None
        return self._checked(store, report, created=False)

    def _checked(
        self, store: VectorStore, report: VectorReport, *, created: bool = False
    ) -> VectorStore | None:
        """Record what the store looks like now; an expired store cannot be used."""
        self.vl.store_ready(
            self.key,
            store.id,
            store.name,
            created=created,
            status=status_json(store),
            now=self.clock(),
        )
        if store.expires_after_days is not None:
            report.warnings.append(
                f"vector store {store.id} expires {store.expires_after_days} days after its "
                "last activity (its expires_after): if nothing uses it for that long it is "
                "deleted, and with it the index syncd keeps"
            )
        if store.status == "expired":
            report.errors.append(f"{store.id} has expired; nothing can be attached to it")
            self.retry = False
            return None
        return store

    def _create(self, row: StoreRow | None, owner: str, report: VectorReport) -> VectorStore | None:
        """The store a lost answer may have made (found by nonce), or a new one."""
        name = self.config.name or ""
        if row is not None and row.state == "creating":
            found = self._find_by_nonce(row.nonce_list(), owner)
            if found is not None:
                return self._checked(found, report, created=True)
        nonce = secrets.token_hex(12)
        self.vl.begin_store_create(self.key, name, nonce, now=self.clock())
        self.step("vector.store_intent", name)
        try:
            store = self.api.create_store(name, {META_OWNER: owner, META_NONCE: nonce})
        except AmbiguousError as exc:
            found = self._find_by_nonce([nonce], owner)
            if found is None:
                report.errors.append(
                    f"creating the store: {exc}; it is looked for by its nonce at the next step"
                )
                return None
            store = found
        log.info("vector_store_created", vector_store_id=store.id, name=name)
        return self._checked(store, report, created=True)

    def _find_by_nonce(self, nonces: Sequence[str], owner: str) -> VectorStore | None:
        """The newest store carrying one of ``nonces`` and our owner tag; the others such
        stores (made by the same lost request, provably ours) are deleted."""
        mine = sorted(
            (
                s
                for s in self.api.list_stores()
                if s.metadata.get(META_NONCE) in nonces and s.metadata.get(META_OWNER) == owner
            ),
            key=lambda s: (s.created_at, s.id),
        )
        for extra in mine[:-1]:
            self.api.delete_store(extra.id)
            log.info("vector_store_duplicate_deleted", vector_store_id=extra.id)
        return mine[-1] if mine else None


def status_json(store: VectorStore) -> str:
    """What ``syncd status`` shows of a store, as the ledger keeps it."""
    return dumps(
        {
            "id": store.id,
            "name": store.name,
            "status": store.status,
            "usage_bytes": store.usage_bytes,
            "file_counts": store.file_counts.to_json(),
            "expires_after_days": store.expires_after_days,
            "expires_at": store.expires_at,
            "last_active_at": store.last_active_at,
        }
    )
