extension SchemaMigration {
    /// Version 2: per-queue settings shared by every process (pause, concurrency limit) and
    /// the ticks of periodic schedules.
    static let v002Queues = SchemaMigration(
        version: 2,
        name: "queues",
        sql: """
            CREATE TABLE echo_queues (
                name        TEXT    PRIMARY KEY,
                paused      INTEGER NOT NULL DEFAULT 0,
                concurrency INTEGER
            ) STRICT;
            CREATE TABLE echo_schedules (
                name      TEXT    PRIMARY KEY,
                last_tick INTEGER NOT NULL
            ) STRICT;
            """
    )
}
