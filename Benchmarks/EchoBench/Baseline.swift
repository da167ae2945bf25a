/// The raw-SQLite baseline: the same rows, written and updated with prepared statements straight
/// through libsqlite3, with none of Echo's machinery (no group commit, no dispatch queues, no
/// fencing, no JSON metadata). Each function returns the elapsed seconds of its timed part.
enum Baseline {
    static let insertSQL = """
        INSERT INTO echo_actions (queue, name, payload, metadata, priority, state, run_at, max_attempts,
            timeout_ms, idempotency_key, next_action, created_at)
        VALUES (?1, ?2, ?3, NULL, 0, 0, ?4, NULL, NULL, NULL, NULL, ?4)
        """

    /// Claims up to 100 due rows, as Echo's claim does (same index, order and columns set).
    static let claimSQL = """
        UPDATE echo_actions
        SET state = 1, owner = ?1, attempt = attempt + 1, run_at = ?2, started_at = coalesce(started_at, ?3)
        WHERE id IN (
            SELECT id FROM echo_actions INDEXED BY echo_actions_due
            WHERE queue = ?4 AND state IN (0, 1) AND run_at <= ?3
            ORDER BY priority DESC, run_at, id
            LIMIT 100)
        RETURNING id, name, payload, attempt
        """

    static let doneSQL = """
        UPDATE echo_actions SET state = 2, owner = NULL, finished_at = ?3, last_error = NULL
        WHERE id = ?1 AND owner = ?2 AND state = 1
        """

    static let karmaSQL = """
        INSERT OR REPLACE INTO echo_karma (action_id, queue, name, outcome, result, attempts, errors,
            enqueued_at, started_at, finished_at)
        SELECT id, queue, name, state, NULL, attempt, errors, created_at, started_at, finished_at
        FROM echo_actions WHERE id = ?1
        """

    static let retrySQL = """
        UPDATE echo_actions SET state = 0, owner = NULL, run_at = ?3, last_error = ?4,
            errors = json_insert(coalesce(errors, '[]'), '$[#]', json_object('attempt', attempt, 'at', ?5, 'message', ?4))
        WHERE id = ?1 AND owner = ?2 AND state = 1
        """

    /// `count` INSERTs, `perTransaction` in each transaction.
    static func insert(
        _ database: RawDatabase, count: Int, perTransaction: Int, progress: String? = nil
    ) throws(BenchError) -> Double {
        let insert = try database.prepare(insertSQL)
        let start = ContinuousClock.now
        var done = 0
        while done < count {
            let size = min(perTransaction, count - done)
            try database.transaction { () throws(BenchError) in
                let now = wallMilliseconds()
                for index in done..<(done + size) {
                    insert.bind(1, "default")
                    insert.bind(2, "Noop")
                    insert.bind(3, payload(index))
                    insert.bind(4, now)
                    try insert.run()
                }
            }
            done += size
            if let progress { Progress.shared.update(progress, done: done, total: count) }
        }
        return seconds(since: start)
    }

    /// Claims 100 due rows per transaction (`UPDATE … RETURNING`), runs a no-op on each, and
    /// records the batch's outcomes in one transaction per 100: done with its Karma row, or (while
    /// `attempt < succeedOnAttempt`) back to ready after an exponential backoff from 1 ms.
    static func process(
        _ database: RawDatabase, count: Int, succeedOnAttempt: Int = 1, progress: String
    ) async throws(BenchError) -> Double {
        let claim = try database.prepare(claimSQL)
        let markDone = try database.prepare(doneSQL)
        let karma = try database.prepare(karmaSQL)
        let retry = try database.prepare(retrySQL)
        let owner = "baseline"
        var finished = 0
        var payloadBytes = 0
        let start = ContinuousClock.now
        while finished < count {
            let claimed = try database.transaction { () throws(BenchError) -> [(id: Int64, attempt: Int64)] in
                let now = wallMilliseconds()
                claim.bind(1, owner)
                claim.bind(2, now + 30_000)
                claim.bind(3, now)
                claim.bind(4, "default")
                var rows: [(id: Int64, attempt: Int64)] = []
                while try claim.step() {
                    // Read what a worker reads: the name and the payload.
                    payloadBytes &+= claim.string(1).utf8.count + claim.bytes(2).count
                    rows.append((claim.int64(0), claim.int64(3)))
                }
                claim.reset()
                return rows
            }
            if claimed.isEmpty {
                // Only rows waiting for their retry time are left.
                try? await Task.sleep(for: .milliseconds(1))
                continue
            }
            finished += try database.transaction { () throws(BenchError) -> Int in
                let now = wallMilliseconds()
                var succeeded = 0
                for row in claimed {
                    if row.attempt < Int64(succeedOnAttempt) {
                        retry.bind(1, row.id)
                        retry.bind(2, owner)
                        retry.bind(3, now + (Int64(1) << (row.attempt - 1)))
                        retry.bind(4, "failed on purpose")
                        retry.bind(5, now)
                        try retry.run()
                    } else {
                        markDone.bind(1, row.id)
                        markDone.bind(2, owner)
                        markDone.bind(3, now)
                        try markDone.run()
                        karma.bind(1, row.id)
                        try karma.run()
                        succeeded += 1
                    }
                }
                return succeeded
            }
            Progress.shared.update(progress, done: finished, total: count)
        }
        let elapsed = seconds(since: start)
        guard payloadBytes > 0 else { throw BenchError("the baseline read no payloads") }
        return elapsed
    }
}
