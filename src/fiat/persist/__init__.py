"""Persist: storage behind a narrow, written contract, one subpackage per backend.

* :mod:`fiat.persist.protocols` — the contract: ``LogStore`` and ``LogWriter`` (the
  transparency log's entries, tiles and checkpoint, plus the rows a batch stages with
  them), ``EvidenceIndex`` (permit id → log entries) and ``AuthorityStore`` (policy
  versions, approvals, revocations, single-use permits).
* :mod:`fiat.persist.records` — the typed, frozen records the stores return and stage.
* :mod:`fiat.persist.sqlite` — the embedded default backend (one SQLite file in WAL mode).

A later ``fiat.persist.postgres`` implements the same protocols (``SELECT … FOR UPDATE``
on the log's state row gives the single-writer guarantee SQLite's ``BEGIN IMMEDIATE``
gives). Callers never build a backend themselves: :mod:`fiat.wiring` reads
``storage.backend`` and passes the stores into the constructors that need them.

Imports: the standard library and :mod:`fiat.errors` only. Nothing here knows about
permits' meaning, Cedar or HTTP; the layers above import this package, never the reverse.
"""
