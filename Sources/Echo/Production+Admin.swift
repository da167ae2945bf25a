import Foundation

extension Production {
    static let recordColumns = """
        id, queue, name, payload, metadata, priority, state, run_at, attempt, max_attempts,
        idempotency_key, owner, revoked, errors, created_at, started_at, finished_at
        """

    static func record(from statement: Statement) -> ActionRecord {
        var metadata = Vector()
        if let text = statement.optionalString(4) {
            metadata = (try? JSONDecoder().decode(Vector.self, from: Data(text.utf8))) ?? Vector()
        }
        return ActionRecord(
            id: ActionID(statement.int64(0)),
            queue: statement.string(1),
            name: Signature(statement.string(2)),
            payload: statement.bytes(3),
            metadata: metadata,
            priority: statement.int(5),
            state: ActionState(rawValue: statement.int(6)),
            runAt: Date(milliseconds: statement.int64(7)),
            attempt: statement.int(8),
            maxAttempts: statement.isNull(9) ? 0 : statement.int(9),
            idempotencyKey: statement.optionalString(10),
            owner: statement.optionalString(11),
            isRevoked: statement.int(12) != 0,
            errors: decodeErrors(statement.optionalString(13)),
            createdAt: Date(milliseconds: statement.int64(14)),
            startedAt: statement.optionalInt(15).map(Date.init(milliseconds:)),
            finishedAt: statement.optionalInt(16).map(Date.init(milliseconds:))
        )
    }

    static func decodeErrors(_ text: String?) -> [AttemptError] {
        guard let text else { return [] }
        return (try? JSONDecoder().decode([AttemptError].self, from: Data(text.utf8))) ?? []
    }

    /// The stored action with `id`, or `nil` when there is none (never enqueued, or pruned).
    ///
    /// `maxAttempts` is 0 when the action left it to its Plan signature.
    public func action(_ id: ActionID) async throws -> ActionRecord? {
        try await store.reader.read { connection in
            let statement = try connection.statement(
                "SELECT \(Production.recordColumns) FROM echo_actions WHERE id = ?1")
            statement.bind(1, id.rawValue)
            guard try statement.step() else { return nil }
            let record = Production.record(from: statement)
            statement.reset()
            return record
        }
    }

    /// The Karma of a finished action: its outcome, result, attempts, errors and times.
    public func karma(_ id: ActionID) async throws -> KarmaRecord? {
        try await store.reader.read { connection in
            let statement = try connection.statement(
                """
                SELECT action_id, queue, name, outcome, result, attempts, errors, enqueued_at, started_at,
                    finished_at FROM echo_karma WHERE action_id = ?1
                """)
            statement.bind(1, id.rawValue)
            guard try statement.step() else { return nil }
            let record = KarmaRecord(
                actionID: ActionID(statement.int64(0)),
                queue: statement.string(1),
                name: Signature(statement.string(2)),
                outcome: Outcome(state: ActionState(rawValue: statement.int(3))),
                result: statement.optionalBytes(4),
                attempts: statement.int(5),
                errors: Production.decodeErrors(statement.optionalString(6)),
                enqueuedAt: Date(milliseconds: statement.int64(7)),
                startedAt: statement.optionalInt(8).map(Date.init(milliseconds:)),
                finishedAt: Date(milliseconds: statement.int64(9))
            )
            statement.reset()
            return record
        }
    }

    /// Stored actions, filtered and paged in id order.
    ///
    /// - Parameters:
    ///   - state: Only actions in this state; `nil` for all.
    ///   - queue: Only actions of this queue; `nil` for all.
    ///   - name: Only actions with this name; `nil` for all.
    ///   - after: Only actions with a larger id (for paging); `nil` to start at the first.
    ///   - limit: At most this many.
    public func list(
        state: ActionState? = nil, queue: String? = nil, name: Signature? = nil, after: ActionID? = nil,
        limit: Int = 100
    ) async throws -> [ActionRecord] {
        try await store.reader.read { connection in
            let statement = try connection.statement(
                """
                SELECT \(Production.recordColumns) FROM echo_actions
                WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR queue = ?2) AND (?3 IS NULL OR name = ?3)
                    AND id > ?4
                ORDER BY id LIMIT ?5
                """)
            statement.bind(1, state?.rawValue)
            statement.bind(2, queue)
            statement.bind(3, name?.name)
            statement.bind(4, after?.rawValue ?? 0)
            statement.bind(5, max(0, limit))
            var records: [ActionRecord] = []
            while try statement.step() { records.append(Production.record(from: statement)) }
            return records
        }
    }

    /// Dead letters, oldest first.
    public func deadLetters(queue: String? = nil, after: ActionID? = nil, limit: Int = 100) async throws
        -> [ActionRecord]
    {
        try await list(state: .dead, queue: queue, after: after, limit: limit)
    }

    /// Puts a dead-lettered or cancelled action back to ready, with fresh attempts; its error
    /// history is kept.
    ///
    /// - Returns: Whether the action was dead or cancelled (and is now ready).
    @discardableResult
    public func retry(_ id: ActionID) async throws -> Bool {
        let retried = try await store.writer.write { connection in
            let statement = try connection.statement(
                """
                UPDATE echo_actions SET state = 0, run_at = ?2, attempt = 0, owner = NULL, revoked = 0,
                    finished_at = NULL WHERE id = ?1 AND state IN (3, 4)
                """)
            statement.bind(1, id.rawValue)
            statement.bind(2, Clock.milliseconds())
            try statement.run()
            guard connection.changes == 1 else { return false }
            let karma = try connection.statement("DELETE FROM echo_karma WHERE action_id = ?1")
            karma.bind(1, id.rawValue)
            try karma.run()
            return true
        }
        if retried { store.doorbell.ring() }
        return retried
    }

    /// Retries every dead letter (of `queue`, or of all queues).
    ///
    /// - Returns: How many were put back to ready.
    @discardableResult
    public func retryDeadLetters(queue: String? = nil) async throws -> Int {
        let count = try await store.writer.write { connection in
            let statement = try connection.statement(
                """
                DELETE FROM echo_karma WHERE action_id IN
                    (SELECT id FROM echo_actions WHERE state = 3 AND (?1 IS NULL OR queue = ?1))
                """)
            statement.bind(1, queue)
            try statement.run()
            let update = try connection.statement(
                """
                UPDATE echo_actions SET state = 0, run_at = ?2, attempt = 0, owner = NULL, revoked = 0,
                    finished_at = NULL
                WHERE state = 3 AND (?1 IS NULL OR queue = ?1)
                """)
            update.bind(1, queue)
            update.bind(2, Clock.milliseconds())
            try update.run()
            return connection.changes
        }
        if count > 0 { store.doorbell.ring() }
        return count
    }

    /// Revokes an action's license. A ready action is cancelled at once (Karma records the
    /// license error) and never runs. A leased one is marked revoked: a Sequencer that has not
    /// started it cancels it with the license error, and one running it cancels its task.
    ///
    /// - Returns: Whether the action was ready or leased.
    @discardableResult
    public func revoke(_ id: ActionID) async throws -> Bool {
        try await store.writer.write { connection in
            let now = Clock.milliseconds()
            let statement = try connection.statement(
                """
                UPDATE echo_actions SET revoked = 1,
                    state = CASE WHEN state = 0 THEN 4 ELSE state END,
                    finished_at = CASE WHEN state = 0 THEN ?2 ELSE finished_at END,
                    last_error = CASE WHEN state = 0 THEN 'license: revoked before it ran' ELSE last_error END,
                    errors = CASE WHEN state = 0 THEN json_insert(coalesce(errors, '[]'), '$[#]',
                        json_object('attempt', attempt, 'at', ?2, 'message', 'license: revoked before it ran'))
                        ELSE errors END
                WHERE id = ?1 AND state IN (0, 1)
                RETURNING state
                """)
            statement.bind(1, id.rawValue)
            statement.bind(2, now)
            guard try statement.step() else { return false }
            let state = statement.int(0)
            statement.reset()
            if state == ActionState.cancelled.rawValue {
                try SQLiteStore.recordKarma(id: id.rawValue, result: nil, on: connection)
            }
            return true
        }
    }

    /// Deletes an action that is not leased, and its Karma.
    ///
    /// - Returns: Whether a row was deleted.
    @discardableResult
    public func delete(_ id: ActionID) async throws -> Bool {
        try await store.writer.write { connection in
            let statement = try connection.statement("DELETE FROM echo_actions WHERE id = ?1 AND state != 1")
            statement.bind(1, id.rawValue)
            try statement.run()
            guard connection.changes == 1 else { return false }
            let karma = try connection.statement("DELETE FROM echo_karma WHERE action_id = ?1")
            karma.bind(1, id.rawValue)
            try karma.run()
            return true
        }
    }

    /// Deletes every dead letter (of `queue`, or of all queues) and its Karma.
    ///
    /// - Returns: How many were deleted.
    @discardableResult
    public func deleteDeadLetters(queue: String? = nil) async throws -> Int {
        try await store.writer.write { connection in
            let karma = try connection.statement(
                "DELETE FROM echo_karma WHERE outcome = 3 AND (?1 IS NULL OR queue = ?1)")
            karma.bind(1, queue)
            try karma.run()
            let statement = try connection.statement(
                "DELETE FROM echo_actions WHERE state = 3 AND (?1 IS NULL OR queue = ?1)")
            statement.bind(1, queue)
            try statement.run()
            return connection.changes
        }
    }

    /// Deletes done and cancelled actions, and their Karma, that finished more than `age` ago.
    /// Dead letters are kept until deleted.
    ///
    /// Deletes in chunks of a few thousand rows, one transaction each, so a large prune never
    /// holds the write lock for long.
    ///
    /// - Returns: How many actions were deleted.
    @discardableResult
    public func prune(olderThan age: Duration) async throws -> Int {
        try await prune(olderThan: age, while: { true })
    }

    /// ``prune(olderThan:)`` that stops between chunks once `proceed` returns `false`.
    func prune(olderThan age: Duration, while proceed: () -> Bool) async throws -> Int {
        try await prune(finishedBefore: Clock.milliseconds() - Clock.milliseconds(age), while: proceed)
    }

    /// Deletes done and cancelled actions, and their Karma, except the `count` that finished last.
    /// Dead letters are kept until deleted.
    ///
    /// - Returns: How many actions were deleted.
    /// - Throws: ``ActionError/Code/invalidArgument`` for a negative count.
    @discardableResult
    public func prune(keepingNewest count: Int) async throws -> Int {
        try await prune(keepingNewest: count, while: { true })
    }

    /// ``prune(keepingNewest:)`` that stops between chunks once `proceed` returns `false`.
    func prune(keepingNewest count: Int, while proceed: () -> Bool) async throws -> Int {
        guard count >= 0 else { throw ActionError(.invalidArgument, "cannot keep a negative number of actions") }
        if count == 0 { return try await prune(finishedBefore: Int64.max, while: proceed) }
        let cutoff = try await store.reader.read { connection -> Int64? in
            let statement = try connection.statement(
                """
                SELECT finished_at FROM echo_actions WHERE state IN (2, 4)
                ORDER BY finished_at DESC LIMIT 1 OFFSET ?1
                """)
            statement.bind(1, count - 1)
            guard try statement.step() else { return nil }
            let value = statement.optionalInt(0)
            statement.reset()
            return value
        }
        // Everything that finished before the count-th newest goes; ties with it are kept.
        guard let cutoff else { return 0 }
        return try await prune(finishedBefore: cutoff, while: proceed)
    }

    /// Rows deleted per transaction by a prune.
    static let pruneChunk = 5_000

    private func prune(finishedBefore cutoff: Int64, while proceed: () -> Bool) async throws -> Int {
        var total = 0
        while true {
            let (actions, karma) = try await store.writer.write { connection in
                // One chunk of each table, finished rows only (Karma outcome = the action's state).
                func deleteChunk(_ sql: String) throws -> Int {
                    let statement = try connection.statement(sql)
                    statement.bind(1, cutoff)
                    statement.bind(2, Production.pruneChunk)
                    try statement.run()
                    return connection.changes
                }
                let karma = try deleteChunk(
                    """
                    DELETE FROM echo_karma WHERE action_id IN (
                        SELECT action_id FROM echo_karma WHERE outcome IN (2, 4) AND finished_at < ?1 LIMIT ?2)
                    """)
                let actions = try deleteChunk(
                    """
                    DELETE FROM echo_actions WHERE id IN (
                        SELECT id FROM echo_actions WHERE state IN (2, 4) AND finished_at < ?1 LIMIT ?2)
                    """)
                return (actions, karma)
            }
            total += actions
            if actions < Production.pruneChunk && karma < Production.pruneChunk { return total }
            if !proceed() { return total }
        }
    }

    /// Counts by queue and state, the oldest due action, and each queue's settings.
    public func stats() async throws -> [QueueStats] {
        try await store.reader.read { connection in
            var byQueue: [String: QueueStats] = [:]
            func entry(_ queue: String) -> QueueStats {
                byQueue[queue] ?? QueueStats(queue: queue, counts: [:], oldestDue: nil, isPaused: false)
            }
            let counts = try connection.statement(
                "SELECT queue, state, count(*) FROM echo_actions GROUP BY queue, state")
            while try counts.step() {
                let queue = counts.string(0)
                var stats = entry(queue)
                stats.counts[ActionState(rawValue: counts.int(1))] = counts.int(2)
                byQueue[queue] = stats
            }
            let due = try connection.statement(
                "SELECT queue, min(run_at) FROM echo_actions WHERE state = 0 AND run_at <= ?1 GROUP BY queue")
            due.bind(1, Clock.milliseconds())
            while try due.step() {
                var stats = entry(due.string(0))
                stats.oldestDue = due.optionalInt(1).map(Date.init(milliseconds:))
                byQueue[stats.queue] = stats
            }
            let settings = try connection.statement("SELECT name, paused, concurrency FROM echo_queues")
            while try settings.step() {
                var stats = entry(settings.string(0))
                stats.isPaused = settings.int(1) != 0
                stats.concurrencyLimit = settings.isNull(2) ? nil : settings.int(2)
                byQueue[stats.queue] = stats
            }
            return byQueue.values.sorted { $0.queue < $1.queue }
        }
    }

    /// Pauses a queue in every process: Sequencers lease nothing from it until it is resumed.
    /// Actions already running finish.
    public func pause(queue: String) async throws {
        try await setQueue(queue, paused: true)
    }

    /// Resumes a paused queue.
    public func resume(queue: String) async throws {
        try await setQueue(queue, paused: false)
        store.doorbell.ring()
    }

    private func setQueue(_ queue: String, paused: Bool) async throws {
        try await store.writer.write { connection in
            let statement = try connection.statement(
                """
                INSERT INTO echo_queues (name, paused) VALUES (?1, ?2)
                ON CONFLICT (name) DO UPDATE SET paused = excluded.paused
                """)
            statement.bind(1, queue)
            statement.bind(2, paused ? 1 : 0)
            try statement.run()
        }
    }

    /// Limits how many actions of `queue` run at once across every process on this file;
    /// `nil` removes the limit.
    ///
    /// - Throws: ``ActionError/Code/invalidArgument`` for a limit below 1.
    public func setConcurrencyLimit(_ limit: Int?, queue: String) async throws {
        if let limit, limit < 1 { throw ActionError(.invalidArgument, "a concurrency limit must be at least 1") }
        try await store.writer.write { connection in
            let statement = try connection.statement(
                """
                INSERT INTO echo_queues (name, concurrency) VALUES (?1, ?2)
                ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency
                """)
            statement.bind(1, queue)
            statement.bind(2, limit)
            try statement.run()
        }
    }

    /// Reports the number of ready and leased actions of each queue to the `echo_queue_depth` gauge.
    func recordQueueDepth() async {
        let depths = try? await store.reader.read { connection in
            let statement = try connection.statement(
                "SELECT queue, count(*) FROM echo_actions WHERE state IN (0, 1) GROUP BY queue")
            var depths: [(String, Int)] = []
            while try statement.step() { depths.append((statement.string(0), statement.int(1))) }
            return depths
        }
        for (queue, depth) in depths ?? [] { metrics.queueDepth(queue: queue, depth: depth) }
    }
}
