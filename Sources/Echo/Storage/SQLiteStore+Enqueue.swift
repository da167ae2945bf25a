import Foundation
import Synchronization

extension SQLiteStore {
    static let insertSQL = """
        INSERT INTO echo_actions (queue, name, payload, metadata, priority, state, run_at, max_attempts,
            timeout_ms, idempotency_key, next_action, created_at)
        VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8, ?9, ?10, ?11)
        ON CONFLICT (idempotency_key) DO NOTHING
        """

    /// Inserts one action inside the caller's transaction; with an idempotency key already
    /// stored, inserts nothing and returns the stored action's id.
    static func insert(_ action: NewAction, now: Int64, on connection: Connection) throws -> Int64 {
        let options = action.options
        guard !options.queue.isEmpty else {
            throw ActionError(.invalidArgument, "an action's queue name must not be empty")
        }
        if let maxAttempts = options.maxAttempts, maxAttempts < 1 {
            throw ActionError(.invalidArgument, "maxAttempts must be at least 1, not \(maxAttempts)")
        }
        let runAt: Int64
        if let date = options.runAt {
            runAt = date.milliseconds
        } else if let delay = options.delay {
            runAt = now + max(0, Clock.milliseconds(delay))
        } else {
            runAt = now
        }
        var metadata = options.metadata
        if !options.hooks.isEmpty {
            metadata[hooksKey] = .array(options.hooks.map { .string($0) })
        }
        let statement = try connection.statement(insertSQL)
        statement.bind(1, options.queue)
        statement.bind(2, action.name.name)
        statement.bind(3, action.payload)
        statement.bind(4, metadata.isEmpty ? nil : try encodeJSON(metadata))
        statement.bind(5, options.priority)
        statement.bind(6, runAt)
        statement.bind(7, options.maxAttempts)
        statement.bind(8, options.timeout.map { Clock.milliseconds($0) })
        statement.bind(9, options.idempotencyKey)
        statement.bind(10, action.nextPayload)
        statement.bind(11, now)
        // No `RETURNING id`: SQLite collects RETURNING rows in a temporary b-tree that it opens and
        // closes on every execution, which cost about a third of a batch enqueue. The id comes from
        // the connection instead; only the writer's queue uses this connection, so nothing else
        // inserts in between.
        // > sqlite3_changes() returns the number of rows modified, inserted or deleted by the most
        // > recently completed INSERT, UPDATE or DELETE statement on the database connection
        // (sqlite.org/c3ref/changes.html): 0 when the idempotency key was already stored.
        try statement.run()
        if connection.changes == 1 {
            let id = connection.lastInsertRowID
            statement.reset()
            return id
        }
        statement.reset()
        guard let key = options.idempotencyKey else {
            throw ActionError(.storage, "insert of \(action.name) returned no id")
        }
        let existing = try connection.statement("SELECT id FROM echo_actions WHERE idempotency_key = ?1")
        existing.bind(1, key)
        guard try existing.step() else {
            throw ActionError(.storage, "idempotency key conflict without a stored action")
        }
        let id = existing.int64(0)
        existing.reset()
        return id
    }

    /// Throws ``ActionError/Code/closed`` once ``close()`` was called.
    func checkOpen() throws {
        if enqueueGroup.withLock({ $0.closed }) { throw ActionError(.closed, "the production was closed") }
    }

    /// The metadata key under which an action's hook names are stored.
    static let hooksKey = "echo.hooks"

    static func encodeJSON(_ value: some Encodable) throws -> String {
        do {
            return String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
        } catch {
            throw ActionError(.encoding, "cannot encode metadata: \(error)", underlying: error)
        }
    }

    /// Enqueues a batch in one transaction: all of it is stored, or none.
    func enqueue(batch: [NewAction]) async throws -> [Int64] {
        try checkOpen()
        guard !batch.isEmpty else { return [] }
        let ids = try await writer.write { connection in
            let now = Clock.milliseconds()
            return try batch.map { try SQLiteStore.insert($0, now: now, on: connection) }
        }
        doorbell.ring()
        return ids
    }

    /// Enqueues one action through group commit: concurrent callers share a transaction, and
    /// each resumes only after the transaction holding its row has committed.
    func enqueue(grouped action: NewAction) async throws -> Int64 {
        try await withCheckedThrowingContinuation { continuation in
            let startFlush = enqueueGroup.withLock { group -> Bool? in
                if group.closed { return nil }
                group.pending.append(PendingEnqueue(action: action, continuation: continuation))
                if group.flushing { return false }
                group.flushing = true
                return true
            }
            switch startFlush {
            case nil: continuation.resume(throwing: ActionError(.closed, "the production was closed"))
            case true?: writer.queue.async { self.flushEnqueues() }
            case false?: break
            }
        }
    }

    /// Commits the pending enqueues as one group, then queues itself again until none are left.
    /// Runs on the writer's queue; while a group commits, new callers gather into the next one.
    /// One group per block, so that claims and outcome commits queued on the writer meanwhile
    /// run between groups instead of waiting for a moment with no enqueue pending.
    private func flushEnqueues() {
        let group = enqueueGroup.withLock { group -> [PendingEnqueue] in
            let taken = group.pending
            group.pending = []
            if taken.isEmpty { group.flushing = false }
            return taken
        }
        if group.isEmpty { return }
        defer { writer.queue.async { self.flushEnqueues() } }
        var results: [Result<Int64, any Error>] = []
        do {
            try writer.transactionOnQueue { connection in
                results = try SQLiteStore.insert(group, on: connection)
            }
        } catch {
            for item in group { item.continuation.resume(throwing: error) }
            return
        }
        for (item, result) in zip(group, results) { item.continuation.resume(with: result) }
        doorbell.ring()
    }

    /// Inserts a group's actions inside the caller's transaction, one result per action.
    private static func insert(_ group: [PendingEnqueue], on connection: Connection) throws -> [Result<
        Int64, any Error
    >] {
        let now = Clock.milliseconds()
        var results: [Result<Int64, any Error>] = []
        results.reserveCapacity(group.count)
        for item in group {
            do {
                results.append(.success(try SQLiteStore.insert(item.action, now: now, on: connection)))
            } catch {
                // A constraint failure backs out only its own statement; an I/O or full-disk error
                // rolls the whole transaction back and fails everyone.
                guard connection.isInTransaction else { throw error }
                results.append(.failure(error))
            }
        }
        return results
    }

    /// Runs `body` in a write transaction that also carries the enqueues waiting for their group
    /// commit, inserted first: one commit instead of two, and a claim in that transaction can
    /// already lease what they inserted. Each waiting caller resumes only after this transaction
    /// has committed. Should the transaction fail, the enqueues go back to the front of the queue
    /// for their own group commit, so they never fail for `body`'s reasons.
    func writeCarryingEnqueues<T: Sendable>(_ body: @escaping @Sendable (Connection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            writer.queue.async {
                let group = self.enqueueGroup.withLock { group -> [PendingEnqueue] in
                    let taken = group.pending
                    group.pending = []
                    return taken
                }
                var results: [Result<Int64, any Error>] = []
                do {
                    let value = try self.writer.transactionOnQueue { connection -> T in
                        if !group.isEmpty { results = try SQLiteStore.insert(group, on: connection) }
                        return try body(connection)
                    }
                    if !group.isEmpty {
                        for (item, result) in zip(group, results) { item.continuation.resume(with: result) }
                        self.doorbell.ring()
                    }
                    continuation.resume(returning: value)
                } catch {
                    if !group.isEmpty { self.requeue(group) }
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    /// Puts enqueues back at the front of the pending list and makes sure a flush will run; once
    /// ``close()`` was called, fails them instead, as it failed every other waiting enqueue.
    private func requeue(_ items: [PendingEnqueue]) {
        let startFlush = enqueueGroup.withLock { group -> Bool? in
            if group.closed { return nil }
            group.pending.insert(contentsOf: items, at: 0)
            if group.flushing { return false }
            group.flushing = true
            return true
        }
        switch startFlush {
        case nil:
            for item in items { item.continuation.resume(throwing: ActionError(.closed, "the production was closed")) }
        case true?: writer.queue.async { self.flushEnqueues() }
        case false?: break
        }
    }
}
