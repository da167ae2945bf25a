public import CoreMetrics
import Foundation
public import Logging

/// The durable action queue: an SQLite file in WAL mode, with leases.
///
/// ```swift
/// let production = try await Production.open(path: "actions.sqlite")
/// let id = try await production.enqueue("Read", ReadInput(path: "a.txt"))
/// ```
///
/// Every enqueue is committed before it returns. Concurrent single enqueues share transactions
/// (group commit); ``enqueue(_:)-([NewAction])`` stores a batch in one transaction.
public final class Production: Sendable {
    /// How the database is opened.
    public struct Configuration: Sendable {
        /// When SQLite waits for the disk to confirm a commit.
        public struct Synchronous: Sendable, Hashable, CustomStringConvertible {
            let pragma: String
            /// Every commit is synced: an acknowledged enqueue survives power loss and OS crashes.
            public static let full = Synchronous(pragma: "FULL")
            /// WAL commits are synced at checkpoints only: an acknowledged enqueue survives a crash
            /// of the process, but the last commits may be lost on power loss or an OS crash.
            public static let normal = Synchronous(pragma: "NORMAL")
            /// `FULL` or `NORMAL`.
            public var description: String { pragma }
        }

        /// The durability mode. The default is ``Synchronous/full``: Echo's promise is that an
        /// acknowledged enqueue survives a crash of the machine, and group commit spreads the cost
        /// of each sync over every enqueue waiting for it.
        public var synchronous: Synchronous
        /// How long a write waits for another process's write lock before failing with
        /// ``ActionError/Code/busy``. The default is 30 seconds.
        public var busyTimeout: Duration
        /// Attempts before an action is dead-lettered when neither the action nor its Plan
        /// signature says. The default is 20.
        public var defaultMaxAttempts: Int
        /// A cap on the database's size in pages (`PRAGMA max_page_count`), for quotas and for
        /// testing a full disk. The default, `nil`, is no cap.
        public var maximumPageCount: Int?
        /// Whether ``Production/open(path:configuration:logger:metricsFactory:)`` creates a missing
        /// file. The default is `true`; inspectors such as `echoctl` set it to `false`.
        public var createIfMissing: Bool
        /// Whether opening applies the migrations a database from an older Echo lacks. The default
        /// is `true`; inspectors such as `echoctl` set it to `false`, so that looking at a database
        /// never upgrades it under an application still running an older Echo.
        public var migratesSchema: Bool

        /// Creates a configuration; every parameter has the default described on its property.
        public init(
            synchronous: Synchronous = .full,
            busyTimeout: Duration = .seconds(30),
            defaultMaxAttempts: Int = 20,
            maximumPageCount: Int? = nil,
            createIfMissing: Bool = true,
            migratesSchema: Bool = true
        ) {
            self.migratesSchema = migratesSchema
            self.createIfMissing = createIfMissing
            self.synchronous = synchronous
            self.busyTimeout = busyTimeout
            self.defaultMaxAttempts = defaultMaxAttempts
            self.maximumPageCount = maximumPageCount
        }
    }

    /// The database file's path.
    public let path: String
    /// The configuration it was opened with.
    public let configuration: Configuration
    let store: SQLiteStore
    let logger: Logger
    let metrics: EchoMetrics

    private init(
        path: String, configuration: Configuration, store: SQLiteStore, logger: Logger, metrics: EchoMetrics
    ) {
        self.path = path
        self.configuration = configuration
        self.store = store
        self.logger = logger
        self.metrics = metrics
    }

    /// Opens the Echo database at `path`, creating it and applying migrations as needed.
    ///
    /// - Parameters:
    ///   - path: The database file. Its directory must be writable (WAL keeps `-wal` and `-shm`
    ///     files beside it).
    ///   - configuration: Durability and limits.
    ///   - logger: Where Echo logs; Echo never configures logging itself.
    ///   - metricsFactory: Where Echo's metrics (`echo_actions_*_total`, `echo_leases_lost_total`,
    ///     `echo_action_wait_duration`, `echo_action_run_duration`, `echo_queue_depth`; the README
    ///     lists them) go; the default, `nil`, is the factory bootstrapped in `MetricsSystem`.
    /// - Throws: ``ActionError`` with ``ActionError/Code/notADatabase``,
    ///   ``ActionError/Code/notEchoDatabase`` or ``ActionError/Code/newerSchema`` for a file Echo
    ///   must not touch (it is left byte-for-byte as it was), ``ActionError/Code/readOnly`` for a
    ///   file or directory that cannot be written.
    public static func open(
        path: String,
        configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "echo"),
        metricsFactory: (any MetricsFactory)? = nil
    ) async throws -> Production {
        guard configuration.defaultMaxAttempts >= 1 else {
            throw ActionError(.invalidArgument, "defaultMaxAttempts must be at least 1")
        }
        let store = try SQLiteStore.open(path: path, configuration: configuration, logger: logger)
        return Production(
            path: path, configuration: configuration, store: store, logger: logger,
            metrics: EchoMetrics(factory: metricsFactory))
    }

    /// Fails every enqueue still waiting for its group and refuses new enqueues and transactions. Connections close
    /// when the last reference to the production goes.
    public func close() {
        store.close()
    }

    // MARK: Enqueue

    /// Encodes `input` and enqueues an action; it is committed to disk when this returns.
    ///
    /// - Parameters:
    ///   - name: The function's name in the Plan.
    ///   - input: The function's input, encoded as JSON.
    ///   - options: Queue, priority, run-at, idempotency key and the rest.
    /// - Returns: The action's id; with an idempotency key already stored, the stored action's id.
    /// - Throws: ``ActionError``: ``ActionError/Code/full`` when the disk is full,
    ///   ``ActionError/Code/busy`` when another process held the write lock past the busy timeout,
    ///   ``ActionError/Code/encoding`` when `input` does not encode. Nothing is stored then.
    @discardableResult
    public func enqueue<Input: Encodable>(
        _ name: Signature, _ input: Input, options: ActionOptions = ActionOptions()
    ) async throws -> ActionID {
        try await enqueue(NewAction(name, input, options: options))
    }

    /// Enqueues one action through group commit: concurrent callers share one transaction, and
    /// each returns only after the transaction holding its row has committed.
    ///
    /// - Throws: ``ActionError``; a failed transaction fails exactly the callers whose rows were in it.
    @discardableResult
    public func enqueue(_ action: NewAction) async throws -> ActionID {
        let id = ActionID(try await store.enqueue(grouped: action))
        metrics.enqueued(queue: action.options.queue, name: action.name.name)
        return id
    }

    /// Enqueues a batch in one transaction: all of it is stored, or none.
    ///
    /// - Returns: The ids, in the batch's order.
    @discardableResult
    public func enqueue(_ batch: [NewAction]) async throws -> [ActionID] {
        let ids = try await store.enqueue(batch: batch).map(ActionID.init)
        for action in batch { metrics.enqueued(queue: action.options.queue, name: action.name.name) }
        return ids
    }

    /// Runs `body` in one write transaction on this database: the application's own writes and
    /// the actions it enqueues through the ``Transaction`` commit together, or not at all.
    ///
    /// ```swift
    /// try await production.transaction { tx in
    ///     try tx.execute("INSERT INTO orders (id) VALUES (?)", [.integer(42)])
    ///     try tx.enqueue("SendReceipt", Receipt(order: 42))
    /// }
    /// ```
    ///
    /// - Throws: What `body` throws (after rolling back), or ``ActionError`` when the commit fails.
    @discardableResult
    public func transaction<T: Sendable>(_ body: @escaping @Sendable (inout Transaction) throws -> T) async throws -> T
    {
        try store.checkOpen()
        let result = try await store.writer.write { connection in
            var transaction = Transaction(connection: connection, now: Clock.milliseconds())
            return try body(&transaction)
        }
        store.doorbell.ring()
        return result
    }
}
