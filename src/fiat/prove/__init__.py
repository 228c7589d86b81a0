"""Prove: the producer side of the evidence — the transparency log and what goes into it.

* ``log`` — :class:`~fiat.prove.log.TransparencyLog`: the sequencer thread and the tree's
  right edge; each batch is one storage transaction and one signed checkpoint; it owns
  and closes its store;
* ``evidence`` — signing in-toto statements, recording permits and statements as their
  exact signed bytes, indexing them by permit id, assembling bundles;
* ``audit`` — a monitor that recomputes a remote log from its tiles and checks consistency.

May import: ``fiat.tlog`` and ``fiat.formats`` (the protocol code), ``fiat.verify`` (the
bundle types it assembles), ``fiat.persist.protocols`` (never a backend: stores are passed in).
"""
