/// The seam between the Sequencer and storage: everything a Sequencer asks of a Production.
///
/// `SQLiteStore` is the only implementation today; a PostgreSQL store (`FOR UPDATE SKIP LOCKED`)
/// would implement the same calls for users who outgrow one machine.
protocol ActionStore: Sendable {
    /// Leases up to `limit` due actions of `queue` to `owner` until `leaseUntil`.
    func claim(queue: String, owner: String, limit: Int, leaseUntil: Int64, defaultMaxAttempts: Int) async throws
        -> [ClaimedAction]
    /// Applies outcomes in one transaction, each fenced by its lease.
    func complete(_ completions: [Completion]) async throws -> [CompletionStatus]
    /// Extends leases still held; reports those lost and those whose license was revoked.
    func heartbeat(_ leases: [Lease], leaseUntil: Int64) async throws -> HeartbeatReport
    /// The earliest `run_at` of a ready or leased action of `queue`, if any.
    func nextDueTime(queue: String) async throws -> Int64?
}

/// The right to finish one attempt: the fencing token is the owner and the attempt number,
/// which every claim increments.
struct Lease: Sendable, Hashable {
    var id: Int64
    var owner: String
    var attempt: Int
}

/// An action leased to a Sequencer.
struct ClaimedAction: Sendable {
    var lease: Lease
    var queue: String
    var name: Signature
    var payload: [UInt8]
    var metadata: Vector
    var priority: Int
    var maxAttempts: Int?
    var timeoutMilliseconds: Int64?
    var isRevoked: Bool
    var nextPayload: [UInt8]?
    var createdAt: Int64
}

/// Writes an action's function hands over, applied in the transaction that records its success.
typealias TransactionEffect = @Sendable (inout Transaction) throws -> Void

/// What to record for one attempt.
enum Resolution: Sendable {
    /// Done: Karma with `result`, chained actions enqueued, effects applied, all in one transaction.
    /// Should an effect throw or a chained action fail to be stored, `fallback` is recorded instead.
    case succeeded(result: [UInt8], next: [NewAction], effects: [TransactionEffect], fallback: Fallback)
    /// Back to ready at `runAt`, the error appended to the history.
    case retry(runAt: Int64, error: String)
    /// Back to ready at `runAt`, the attempt not counted.
    case snooze(runAt: Int64)
    /// Dead-lettered with `error`.
    case dead(error: String)
    /// Cancelled with the license error.
    case cancelled(error: String)
    /// Handed back unstarted (shutdown): ready now, the attempt not counted.
    case release

    /// What a success turns into when one of its effects throws.
    enum Fallback: Sendable {
        case retry(runAt: Int64)
        case dead
    }
}

struct Completion: Sendable {
    var lease: Lease
    var resolution: Resolution
    /// The action's queue and name, for logs and metrics.
    var queue = ""
    var name = ""
}

enum CompletionStatus: Sendable, Equatable {
    case applied
    /// The lease was lost; nothing was written.
    case leaseLost
    /// A success's effect threw (or a chained action could not be stored); the fallback was
    /// recorded with this error.
    case effectFailed(String)
}

struct HeartbeatReport: Sendable {
    var lost: Set<Int64> = []
    var revoked: Set<Int64> = []
}
