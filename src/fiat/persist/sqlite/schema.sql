-- Fiat's SQLite schema, version 6 (recorded in PRAGMA user_version; see db.py).
-- One file holds the log, the evidence index and the authority's state, so a log batch
-- commits the rows it stages (index rows, new approvals) in its own transaction.
-- Every statement is idempotent: a database written before versions were recorded
-- (user_version 0) or by an older version is brought up to date by running this file
-- (db.py adds the columns a table created by an older version lacks).
-- log_meta.schema_version is the log tables' older marker of the same layout (always 1).

CREATE TABLE IF NOT EXISTS log_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    tree_size INTEGER NOT NULL,
    checkpoint BLOB
);
CREATE TABLE IF NOT EXISTS log_entries (
    idx INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS log_tiles (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
INSERT OR IGNORE INTO log_meta (id, schema_version, tree_size, checkpoint) VALUES (1, 1, 0, NULL);

CREATE TABLE IF NOT EXISTS evidence (
    jti TEXT NOT NULL,
    kind TEXT NOT NULL,
    log_index INTEGER NOT NULL,
    PRIMARY KEY (jti, log_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS permits (
    jti TEXT PRIMARY KEY,
    parent TEXT,
    request BLOB NOT NULL,
    log_index INTEGER NOT NULL,
    principal TEXT NOT NULL,
    runtime TEXT NOT NULL,
    depth INTEGER NOT NULL,
    exp REAL NOT NULL,
    iat REAL
);

CREATE TABLE IF NOT EXISTS policy_versions (
    version INTEGER PRIMARY KEY,
    digest TEXT NOT NULL,
    files TEXT NOT NULL,
    published_at REAL NOT NULL,
    log_index INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    action_digest TEXT NOT NULL,
    request BLOB NOT NULL,
    policy_group TEXT NOT NULL,
    requested_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    status TEXT NOT NULL,
    approver TEXT,
    statement_digest TEXT,
    log_index INTEGER,
    runtime TEXT
);
CREATE TABLE IF NOT EXISTS revocations (
    epoch INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL,
    log_index INTEGER NOT NULL,
    expires REAL
);
CREATE TABLE IF NOT EXISTS consumed_permits (
    jti TEXT PRIMARY KEY,
    at REAL NOT NULL
);

-- Schema 3: the DPoP replay cache (RFC 9449 §11.1). key: SHA-256 of the proof key's
-- thumbprint and the proof's jti; expires: when the proof could no longer pass the iat window.
CREATE TABLE IF NOT EXISTS dpop_proofs (
    key TEXT PRIMARY KEY,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dpop_proofs_expires ON dpop_proofs (expires);

-- Schema 4: renewal chains (docs/formats.md, "Renewal and revocation"). One row per renewal:
-- the primary key makes "at most one successor per predecessor" the database's rule, so of
-- two concurrent renewals of one permit exactly one is claimed. The permits index on parent
-- serves the walk of a revocation over lineage descendants.
CREATE TABLE IF NOT EXISTS renewals (
    predecessor TEXT PRIMARY KEY,
    successor TEXT NOT NULL UNIQUE,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS permits_parent ON permits (parent);

-- Schema 5: when each permit was issued (its ``iat``), for the lineage explorer's search by
-- principal and time. A file of an older version gets the column from db.py, which fills it
-- from each permit's own log entry and then creates the indexes on it (permits_iat,
-- permits_principal_iat): they cannot be created here before the column exists.

-- Schema 6: the newest checkpoint that reached the witness quorum (log.witness_quorum), with its
-- cosignature lines (C2SP tlog-cosignature), as /log/checkpoint serves it. One row; its tree size
-- never decreases (SQLiteLogStore.set_witnessed_checkpoint).
CREATE TABLE IF NOT EXISTS log_witnessed (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    tree_size INTEGER NOT NULL,
    checkpoint BLOB NOT NULL
);
