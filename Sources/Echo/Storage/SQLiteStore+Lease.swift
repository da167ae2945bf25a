import Foundation

extension SQLiteStore {
    private static let expireSQL = """
        UPDATE echo_actions
        SET state = 3, owner = NULL, finished_at = ?1, run_at = ?1,
            last_error = 'the lease of the last attempt expired',
            errors = json_insert(coalesce(errors, '[]'), '$[#]',
                json_object('attempt', attempt, 'at', ?1, 'message', 'the lease of the last attempt expired'))
        WHERE id IN (
            SELECT id FROM echo_actions INDEXED BY echo_actions_leased
            WHERE state = 1 AND run_at <= ?1 AND queue = ?2 AND attempt >= max_attempts)
        RETURNING id
        """

    private static let claimSQL = """
        UPDATE echo_actions
        SET state = 1, owner = ?1, attempt = attempt + 1, run_at = ?2,
            started_at = coalesce(started_at, ?3),
            errors = CASE WHEN state = 1
                THEN json_insert(coalesce(errors, '[]'), '$[#]',
                    json_object('attempt', attempt, 'at', ?3, 'message', 'lease expired'))
                ELSE errors END,
            last_error = CASE WHEN state = 1 THEN 'lease expired' ELSE last_error END
        WHERE id IN (
            SELECT id FROM echo_actions INDEXED BY echo_actions_due
            WHERE queue = ?4 AND state IN (0, 1) AND run_at <= ?3
            ORDER BY priority DESC, run_at, id
            LIMIT ?5)
        RETURNING id, name, payload, metadata, priority, attempt, max_attempts, timeout_ms, revoked,
            next_action, created_at
        """

    static let karmaSQL = """
        INSERT OR REPLACE INTO echo_karma (action_id, queue, name, outcome, result, attempts, errors,
            enqueued_at, started_at, finished_at)
        SELECT id, queue, name, state, ?2, attempt, errors, created_at, started_at, finished_at
        FROM echo_actions WHERE id = ?1
        """

    /// Records Karma from the action's row (already moved to its final state).
    static func recordKarma(id: Int64, result: [UInt8]?, on connection: Connection) throws {
        let statement = try connection.statement(karmaSQL)
        statement.bind(1, id)
        statement.bind(2, result)
        try statement.run()
    }

    func claim(queue: String, owner: String, limit: Int, leaseUntil: Int64, defaultMaxAttempts: Int) async throws
        -> [ClaimedAction]
    {
        guard limit > 0 else { return [] }
        let requested = Clock.milliseconds()
        return try await writeCarryingEnqueues { connection in
            let now = Clock.milliseconds()
            // The lease runs from this transaction, not from the request: a claim that waited for
            // the write lock longer than the lease would otherwise lease actions already expired,
            // free for another Sequencer to claim and run at the same time.
            let leaseUntil = leaseUntil + max(0, now - requested)
            var limit = limit
            // Queue settings shared by every process: a paused queue leases nothing, and a
            // concurrency limit counts the live leases of all processes.
            let settings = try connection.statement("SELECT paused, concurrency FROM echo_queues WHERE name = ?1")
            settings.bind(1, queue)
            if try settings.step() {
                let paused = settings.int(0) != 0
                let concurrency = settings.isNull(1) ? nil : settings.int(1)
                settings.reset()
                if paused { return [] }
                if let concurrency {
                    let live = try connection.statement(
                        "SELECT count(*) FROM echo_actions INDEXED BY echo_actions_leased "
                            + "WHERE state = 1 AND run_at > ?1 AND queue = ?2")
                    live.bind(1, now)
                    live.bind(2, queue)
                    _ = try live.step()
                    limit = min(limit, concurrency - live.int(0))
                    live.reset()
                    if limit <= 0 { return [] }
                }
            }

            // An expired lease on the last attempt is a dead letter, not another attempt. Only
            // for rows with their own limit: without one, the Plan signature's limit comes before
            // `defaultMaxAttempts` and only the Sequencer knows it (it dead-letters such an
            // action, unrun, when the claim hands it over past its limit).
            let expire = try connection.statement(SQLiteStore.expireSQL)
            expire.bind(1, now)
            expire.bind(2, queue)
            var expired: [Int64] = []
            while try expire.step() { expired.append(expire.int64(0)) }
            for id in expired { try SQLiteStore.recordKarma(id: id, result: nil, on: connection) }

            let claim = try connection.statement(SQLiteStore.claimSQL)
            claim.bind(1, owner)
            claim.bind(2, leaseUntil)
            claim.bind(3, now)
            claim.bind(4, queue)
            claim.bind(5, limit)
            var claimed: [ClaimedAction] = []
            while try claim.step() {
                let metadataText = claim.optionalString(3)
                var metadata = Vector()
                if let metadataText {
                    metadata = (try? JSONDecoder().decode(Vector.self, from: Data(metadataText.utf8))) ?? Vector()
                }
                claimed.append(
                    ClaimedAction(
                        lease: Lease(id: claim.int64(0), owner: owner, attempt: claim.int(5)),
                        queue: queue,
                        name: Signature(claim.string(1)),
                        payload: claim.bytes(2),
                        metadata: metadata,
                        priority: claim.int(4),
                        maxAttempts: claim.isNull(6) ? nil : claim.int(6),
                        timeoutMilliseconds: claim.optionalInt(7),
                        isRevoked: claim.int(8) != 0,
                        nextPayload: claim.optionalBytes(9),
                        createdAt: claim.int64(10)
                    ))
            }
            claimed.sort { ($0.priority, -$0.lease.id) > ($1.priority, -$1.lease.id) }
            return claimed
        }
    }

    func complete(_ completions: [Completion]) async throws -> [CompletionStatus] {
        guard !completions.isEmpty else { return [] }
        let statuses = try await writeCarryingEnqueues { connection in
            let now = Clock.milliseconds()
            return try completions.map { try SQLiteStore.apply($0, now: now, on: connection) }
        }
        // Wake idle Sequencers when this commit made work due or scheduled it: chained actions
        // (or actions an effect enqueued), and retried, snoozed or released rows, whose new
        // run-at an idle Sequencer has not seen (it sleeps until the old lease's expiry).
        if completions.contains(where: {
            switch $0.resolution {
            case .succeeded(_, let next, let effects, _): return !next.isEmpty || !effects.isEmpty
            case .retry, .snooze, .release: return true
            case .dead, .cancelled: return false
            }
        }) {
            doorbell.ring()
        }
        return statuses
    }

    private static let successSQL = """
        UPDATE echo_actions SET state = 2, owner = NULL, finished_at = ?4, run_at = ?4, last_error = NULL
        WHERE id = ?1 AND owner = ?2 AND attempt = ?3 AND state = 1
        """
    private static let retrySQL = """
        UPDATE echo_actions SET state = 0, owner = NULL, run_at = ?4, last_error = ?5,
            errors = json_insert(coalesce(errors, '[]'), '$[#]',
                json_object('attempt', attempt, 'at', ?6, 'message', ?5))
        WHERE id = ?1 AND owner = ?2 AND attempt = ?3 AND state = 1
        """
    private static let snoozeSQL = """
        UPDATE echo_actions SET state = 0, owner = NULL, run_at = ?4, attempt = attempt - 1
        WHERE id = ?1 AND owner = ?2 AND attempt = ?3 AND state = 1
        """
    private static let finishSQL = """
        UPDATE echo_actions SET state = ?4, owner = NULL, finished_at = ?6, run_at = ?6, last_error = ?5,
            errors = json_insert(coalesce(errors, '[]'), '$[#]',
                json_object('attempt', attempt, 'at', ?6, 'message', ?5))
        WHERE id = ?1 AND owner = ?2 AND attempt = ?3 AND state = 1
        """

    private static func fenced(_ sql: String, _ lease: Lease, on connection: Connection) throws -> Statement {
        let statement = try connection.statement(sql)
        statement.bind(1, lease.id)
        statement.bind(2, lease.owner)
        statement.bind(3, lease.attempt)
        return statement
    }

    /// Applies one completion inside the caller's transaction. Every update is fenced by the
    /// lease (owner and attempt): if another worker claimed the action since, no row matches and
    /// nothing at all is written for this completion.
    static func apply(_ completion: Completion, now: Int64, on connection: Connection) throws -> CompletionStatus {
        let lease = completion.lease
        switch completion.resolution {
        case .succeeded(let result, let next, let effects, let fallback):
            // Chained actions go under the savepoint with the effects: one that cannot be stored
            // (an empty queue name, metadata that does not encode) fails this attempt alone, where
            // it used to fail the whole batch on every try and wedge the Sequencer's commits.
            let needsSavepoint = !effects.isEmpty || !next.isEmpty
            if needsSavepoint { try connection.execute("SAVEPOINT echo_effects") }
            let update = try fenced(successSQL, lease, on: connection)
            update.bind(4, now)
            try update.run()
            guard connection.changes == 1 else {
                if needsSavepoint { try connection.execute("RELEASE echo_effects") }
                return .leaseLost
            }
            try recordKarma(id: lease.id, result: result, on: connection)
            guard needsSavepoint else { return .applied }
            var enqueuedNext = false
            do {
                for action in next { _ = try insert(action, now: now, on: connection) }
                enqueuedNext = true
                var transaction = Transaction(connection: connection, now: now)
                for effect in effects { try effect(&transaction) }
                try connection.execute("RELEASE echo_effects")
                return .applied
            } catch {
                guard connection.isInTransaction else { throw error }
                try connection.execute("ROLLBACK TO echo_effects")
                try connection.execute("RELEASE echo_effects")
                let message =
                    enqueuedNext
                    ? "an effect of the action failed: \(error)"
                    : "a chained action could not be enqueued: \(error)"
                let resolution: Resolution
                switch fallback {
                case .retry(let runAt): resolution = .retry(runAt: runAt, error: message)
                case .dead: resolution = .dead(error: message)
                }
                _ = try apply(Completion(lease: lease, resolution: resolution), now: now, on: connection)
                return .effectFailed(message)
            }
        case .retry(let runAt, let error):
            let update = try fenced(retrySQL, lease, on: connection)
            update.bind(4, runAt)
            update.bind(5, error)
            update.bind(6, now)
            try update.run()
            return connection.changes == 1 ? .applied : .leaseLost
        case .snooze(let runAt):
            let update = try fenced(snoozeSQL, lease, on: connection)
            update.bind(4, runAt)
            try update.run()
            return connection.changes == 1 ? .applied : .leaseLost
        case .release:
            let update = try fenced(snoozeSQL, lease, on: connection)
            update.bind(4, now)
            try update.run()
            return connection.changes == 1 ? .applied : .leaseLost
        case .dead(let error), .cancelled(let error):
            let state: ActionState
            if case .dead = completion.resolution { state = .dead } else { state = .cancelled }
            let update = try fenced(finishSQL, lease, on: connection)
            update.bind(4, state.rawValue)
            update.bind(5, error)
            update.bind(6, now)
            try update.run()
            guard connection.changes == 1 else { return .leaseLost }
            try recordKarma(id: lease.id, result: nil, on: connection)
            return .applied
        }
    }

    func heartbeat(_ leases: [Lease], leaseUntil: Int64) async throws -> HeartbeatReport {
        guard !leases.isEmpty else { return HeartbeatReport() }
        let requested = Clock.milliseconds()
        return try await writer.write { connection in
            // As for claims: the extension runs from this transaction, not from before the wait
            // for the write lock.
            let leaseUntil = leaseUntil + max(0, Clock.milliseconds() - requested)
            var report = HeartbeatReport()
            for lease in leases {
                let statement = try SQLiteStore.fenced(
                    "UPDATE echo_actions SET run_at = ?4 WHERE id = ?1 AND owner = ?2 AND attempt = ?3 AND state = 1 "
                        + "RETURNING revoked",
                    lease, on: connection)
                statement.bind(4, leaseUntil)
                if try statement.step() {
                    if statement.int(0) != 0 { report.revoked.insert(lease.id) }
                    statement.reset()
                } else {
                    report.lost.insert(lease.id)
                }
            }
            return report
        }
    }

    func nextDueTime(queue: String) async throws -> Int64? {
        try await reader.read { connection in
            let statement = try connection.statement(
                "SELECT min(run_at) FROM echo_actions INDEXED BY echo_actions_due WHERE queue = ?1 AND state IN (0, 1)")
            statement.bind(1, queue)
            guard try statement.step() else { return nil }
            let value = statement.optionalInt(0)
            statement.reset()
            return value
        }
    }
}
