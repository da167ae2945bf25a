/// The error Echo throws and records.
///
/// Match on ``code`` to tell the kinds apart:
///
/// ```swift
/// do { try await production.enqueue("Read", input) }
/// catch let error as ActionError where error.code == .full { … }
/// ```
///
/// Storage errors carry the SQLite extended result code in ``sqliteCode``.
public struct ActionError: Error, Sendable, CustomStringConvertible {
    /// What kind of error this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case license, execution, routing, cancellation, timeout, decoding, encoding
            case leaseLost, storage, busy, full, readOnly, notADatabase, notEchoDatabase
            case newerSchema, olderSchema, closed, invalidArgument, notFound
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The action's license was revoked: it was cancelled before it ran, or while it ran.
        public static let license = Code(.license)
        /// The action's function (or one of its hooks) threw.
        public static let execution = Code(.execution)
        /// No function in the ``Plan`` has the action's name.
        public static let routing = Code(.routing)
        /// The attempt was cancelled while it ran (at the end of a shutdown's grace period, or by
        /// the function throwing `CancellationError`); a revocation is ``license``.
        public static let cancellation = Code(.cancellation)
        /// The attempt ran past its timeout and was cancelled.
        public static let timeout = Code(.timeout)
        /// The stored payload does not decode to the function's input type.
        public static let decoding = Code(.decoding)
        /// A value could not be encoded for storage.
        public static let encoding = Code(.encoding)
        /// The completion's lease was lost (it expired and another worker claimed the action),
        /// so the completion was rejected.
        public static let leaseLost = Code(.leaseLost)
        /// SQLite failed; see ``ActionError/sqliteCode``.
        public static let storage = Code(.storage)
        /// The database stayed locked by another connection past every retry.
        public static let busy = Code(.busy)
        /// The disk (or the database's page limit) is full; nothing of the failed write was stored.
        public static let full = Code(.full)
        /// The database file or its directory cannot be written.
        public static let readOnly = Code(.readOnly)
        /// The file is not an SQLite database.
        public static let notADatabase = Code(.notADatabase)
        /// The file is an SQLite database, but not Echo's.
        public static let notEchoDatabase = Code(.notEchoDatabase)
        /// The database was written by a newer version of Echo.
        public static let newerSchema = Code(.newerSchema)
        /// The database was written by an older Echo and the configuration did not allow migrating it.
        public static let olderSchema = Code(.olderSchema)
        /// The production was closed.
        public static let closed = Code(.closed)
        /// An argument was out of range.
        public static let invalidArgument = Code(.invalidArgument)
        /// No action has the given id.
        public static let notFound = Code(.notFound)

        /// The code's name.
        public var description: String { base.rawValue }
    }

    /// What kind of error this is.
    public var code: Code
    /// A human-readable explanation.
    public var message: String
    /// The SQLite extended result code, for storage errors.
    public var sqliteCode: Int32?
    /// The error that caused this one, if any.
    public var underlying: (any Error)?

    /// Creates an error.
    public init(_ code: Code, _ message: String, sqliteCode: Int32? = nil, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.sqliteCode = sqliteCode
        self.underlying = underlying
    }

    /// `code: message`, with the SQLite code when there is one.
    public var description: String {
        if let sqliteCode {
            return "\(code): \(message) (SQLite code \(sqliteCode))"
        }
        return "\(code): \(message)"
    }
}

/// Thrown by an action's function to be run again later without the attempt counting as a failure.
///
/// ```swift
/// guard await rateLimiter.allows() else { throw Snooze(for: .seconds(30)) }
/// ```
public struct Snooze: Error, Sendable {
    /// How long to wait before the action runs again.
    public var delay: Duration

    /// Asks for the action to run again after `delay`.
    public init(for delay: Duration) {
        self.delay = delay
    }
}
