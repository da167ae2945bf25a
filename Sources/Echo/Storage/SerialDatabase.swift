import Dispatch
internal import EchoSQLite

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A connection owned by one serial dispatch queue: every SQLite call on it runs there, off the
/// cooperative thread pool, so a busy wait or an fsync blocks that queue's thread and no task's.
///
/// `@unchecked Sendable`: `connection` is only touched inside blocks submitted to `queue`, which is
/// serial, so no two threads use it at once; the other stored properties are immutable.
final class SerialDatabase: @unchecked Sendable {
    let queue: DispatchQueue
    private let connection: Connection
    /// How long one `BEGIN IMMEDIATE` may retry on SQLITE_BUSY before the write fails.
    let busyDeadlineMilliseconds: Int64

    init(connection: Connection, label: String, busyDeadlineMilliseconds: Int64) {
        self.connection = connection
        self.queue = DispatchQueue(label: label)
        self.busyDeadlineMilliseconds = busyDeadlineMilliseconds
    }

    /// Runs `body` on the queue. Use for reads and for statements outside a transaction.
    func read<T: Sendable>(_ body: @escaping @Sendable (Connection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try body(self.connection) })
            }
        }
    }

    /// Runs `body` on the queue inside `BEGIN IMMEDIATE … COMMIT`.
    func write<T: Sendable>(_ body: @escaping @Sendable (Connection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try self.transactionOnQueue(body) })
            }
        }
    }

    /// Runs `body` in a write transaction. Call only from a block on ``queue``.
    func transactionOnQueue<T>(_ body: (Connection) throws -> T) throws -> T {
        dispatchPrecondition(condition: .onQueue(queue))
        try beginImmediate()
        do {
            let value = try body(connection)
            try connection.execute("COMMIT")
            return value
        } catch {
            if connection.isInTransaction {
                try? connection.execute("ROLLBACK")
            }
            throw error
        }
    }

    /// Runs `body` with the connection. Call only from a block on ``queue``.
    func withConnectionOnQueue<T>(_ body: (Connection) throws -> T) rethrows -> T {
        dispatchPrecondition(condition: .onQueue(queue))
        return try body(connection)
    }

    /// `BEGIN IMMEDIATE`, retried while another connection holds the write lock.
    ///
    /// > If some other database connection has already modified the database or is already in
    /// > the process of modifying the database, then upgrading to a write transaction is not
    /// > possible and the write statement will fail with SQLITE_BUSY.
    /// (sqlite.org/lang_transaction.html) — so writes take the lock up front, where the busy
    /// handler can wait for it, instead of upgrading a read.
    private func beginImmediate() throws {
        let start = Clock.milliseconds()
        var pause: UInt32 = 1_000
        while true {
            do {
                try connection.execute("BEGIN IMMEDIATE")
                return
            } catch {
                guard error.code == .busy else { throw error }
                if Clock.milliseconds() - start > busyDeadlineMilliseconds { throw error }
                usleep(pause)
                pause = min(pause * 2, 100_000)
            }
        }
    }
}
