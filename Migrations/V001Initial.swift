extension SchemaMigration {
    /// Version 1: the actions table and the Karma ledger.
    ///
    /// `state`: 0 ready (or scheduled: `run_at` in the future), 1 leased, 2 done, 3 dead, 4 cancelled.
    /// For a leased row `run_at` holds the lease expiry, so "due" is one range for both ready rows
    /// and rows whose lease expired: `state IN (0, 1) AND run_at <= now`.
    /// Times are milliseconds since 1970.
    static let v001Initial = SchemaMigration(
        version: 1,
        name: "initial",
        sql: """
            CREATE TABLE echo_actions (
                id              INTEGER PRIMARY KEY,
                queue           TEXT    NOT NULL,
                name            TEXT    NOT NULL,
                payload         BLOB    NOT NULL,
                metadata        TEXT,
                priority        INTEGER NOT NULL DEFAULT 0,
                state           INTEGER NOT NULL DEFAULT 0,
                run_at          INTEGER NOT NULL,
                attempt         INTEGER NOT NULL DEFAULT 0,
                max_attempts    INTEGER,
                timeout_ms      INTEGER,
                idempotency_key TEXT    UNIQUE,
                owner           TEXT,
                revoked         INTEGER NOT NULL DEFAULT 0,
                next_action     BLOB,
                errors          TEXT,
                last_error      TEXT,
                created_at      INTEGER NOT NULL,
                started_at      INTEGER,
                finished_at     INTEGER
            ) STRICT;
            CREATE INDEX echo_actions_due ON echo_actions (queue, priority DESC, run_at, id)
                WHERE state IN (0, 1);
            CREATE INDEX echo_actions_leased ON echo_actions (run_at) WHERE state = 1;
            CREATE INDEX echo_actions_finished ON echo_actions (state, finished_at) WHERE state >= 2;
            CREATE TABLE echo_karma (
                action_id   INTEGER PRIMARY KEY,
                queue       TEXT    NOT NULL,
                name        TEXT    NOT NULL,
                outcome     INTEGER NOT NULL,
                result      BLOB,
                attempts    INTEGER NOT NULL,
                errors      TEXT,
                enqueued_at INTEGER NOT NULL,
                started_at  INTEGER,
                finished_at INTEGER NOT NULL
            ) STRICT;
            CREATE INDEX echo_karma_finished ON echo_karma (finished_at);
            """
    )
}
