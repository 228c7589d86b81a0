"""Child process for tests/test_crash.py: append to a Fiat home's log from several threads until told to stop.

Usage: ``python crash_writer.py HOME TAG THREADS SEED``

Protocol on stdout, one line per message, each written with a single locked ``os.write``:

* ``ready <tree size at open> <storage.synchronous>`` once the log is open, just before the writers start;
* ``<index> <sha256 hex of entry> <checkpoint size> <base64 of the checkpoint note>`` after each append
  returned (the acknowledgement: only then is the entry promised to be durable);
* ``done <tree size>`` after a clean stop.

The child stops cleanly when its stdin reaches EOF (the parent closes it, or dies). Entries are
self-describing: ``writer-<tag>-<thread>-<seq>-<random hex padding>``, with ``seq`` counting from 0 per
thread, so the parent can tell that every thread's stored entries form a gap-free, duplicate-free prefix.
Even-numbered threads use ``log.append`` (one entry at a time); odd ones ``log.submit`` with 1..8 entries.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import sys
import threading
import traceback

from fiat.config import load_config
from fiat.wiring import open_log

MAX_IN_FLIGHT = 8  # the most entries one thread has submitted but not yet acknowledged


def main() -> None:
    home, tag, nthreads, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    cfg = load_config(home, require=True)
    log = open_log(cfg)
    stop = threading.Event()
    out_lock = threading.Lock()

    def emit(text: str) -> None:
        data = memoryview(text.encode())
        with out_lock:
            while data:
                data = data[os.write(1, data) :]

    def entry(rng: random.Random, thread: int, seq: int) -> bytes:
        pad = rng.choice((0, 8, 64, 500, 3000))
        return f"writer-{tag}-{thread}-{seq}-".encode() + rng.randbytes(rng.randint(0, pad)).hex().encode()

    def ack(e: bytes, index: int, cp_size: int, cp_note: bytes) -> str:
        return f"{index} {hashlib.sha256(e).hexdigest()} {cp_size} {base64.b64encode(cp_note).decode()}\n"

    def writer(thread: int) -> None:
        rng = random.Random(f"{seed}-{tag}-{thread}")
        seq = 0
        try:
            while not stop.is_set():
                if thread % 2 == 0:
                    e = entry(rng, thread, seq)
                    r = log.append(e)
                    emit(ack(e, r.index, r.checkpoint.size, r.checkpoint.note_bytes))
                    seq += 1
                else:
                    batch = [entry(rng, thread, seq + i) for i in range(rng.randint(1, MAX_IN_FLIGHT))]
                    for e, f in zip(batch, log.submit(batch), strict=True):
                        r = f.result()
                        emit(ack(e, r.index, r.checkpoint.size, r.checkpoint.note_bytes))
                    seq += len(batch)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(3)

    emit(f"ready {log.checkpoint().size} {cfg.storage.synchronous.upper()}\n")
    threads = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(nthreads)]
    for t in threads:
        t.start()
    sys.stdin.buffer.read()  # until EOF: the parent asked us to stop, or went away
    stop.set()
    for t in threads:
        t.join()
    size = log.store.tree_size()  # every append returned: all of it is committed
    log.close()
    emit(f"done {size}\n")


if __name__ == "__main__":
    main()
