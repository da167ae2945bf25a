public import Foundation

/// A stored action as read back from the database.
public struct ActionRecord: Sendable, Hashable {
    /// The action's id.
    public var id: ActionID
    /// The queue it waits in.
    public var queue: String
    /// Its function's name.
    public var name: Signature
    /// The encoded input.
    public var payload: [UInt8]
    /// Its metadata.
    public var metadata: Vector
    /// Its priority; higher runs first.
    public var priority: Int
    /// Where it is in its life.
    public var state: ActionState
    /// When it is due (for a leased action: when its lease expires).
    public var runAt: Date
    /// Attempts started so far.
    public var attempt: Int
    /// Attempts allowed before it is dead-lettered.
    public var maxAttempts: Int
    /// Its idempotency key, if any.
    public var idempotencyKey: String?
    /// The owner of its lease while leased.
    public var owner: String?
    /// Whether its license was revoked.
    public var isRevoked: Bool
    /// The error history, oldest first.
    public var errors: [AttemptError]
    /// When it was enqueued.
    public var createdAt: Date
    /// When its first attempt started.
    public var startedAt: Date?
    /// When it finished (done, dead or cancelled).
    public var finishedAt: Date?
}

/// One failed attempt in an action's error history.
public struct AttemptError: Sendable, Hashable, Codable {
    /// The attempt number (1 for the first).
    public var attempt: Int
    /// When the attempt failed, in milliseconds since 1970.
    public var at: Int64
    /// The error's description.
    public var message: String
}

/// What an action finished as, in ``KarmaRecord``.
public struct Outcome: Hashable, Sendable, CustomStringConvertible {
    let state: ActionState
    /// The function returned.
    public static let succeeded = Outcome(state: .done)
    /// Dead-lettered: after its last attempt, or at once when unroutable or undecodable.
    public static let deadLettered = Outcome(state: .dead)
    /// Its license was revoked, before it ran or while it ran.
    public static let cancelled = Outcome(state: .cancelled)

    /// `succeeded`, `dead` or `cancelled`.
    public var description: String {
        switch state {
        case .done: "succeeded"
        case .dead: "dead"
        default: "cancelled"
        }
    }
}

/// The durable record of what one action did, committed in the same transaction as its outcome.
public struct KarmaRecord: Sendable, Hashable {
    /// The action's id.
    public var actionID: ActionID
    /// Its queue.
    public var queue: String
    /// Its function's name.
    public var name: Signature
    /// How it finished.
    public var outcome: Outcome
    /// The encoded output (JSON) when it succeeded.
    public var result: [UInt8]?
    /// Attempts it took.
    public var attempts: Int
    /// Errors of failed attempts, oldest first.
    public var errors: [AttemptError]
    /// When it was enqueued.
    public var enqueuedAt: Date
    /// When its first attempt started.
    public var startedAt: Date?
    /// When it finished.
    public var finishedAt: Date

    /// Decodes the result as `Output`.
    ///
    /// - Throws: ``ActionError`` ``ActionError/Code/decoding`` when there is no result or it does
    ///   not decode.
    public func decodeResult<Output: Decodable>(as type: Output.Type = Output.self) throws -> Output {
        guard let result else { throw ActionError(.decoding, "action \(actionID) has no result") }
        do {
            return try JSONDecoder().decode(Output.self, from: Data(result))
        } catch {
            throw ActionError(.decoding, "cannot decode the result of \(actionID): \(error)", underlying: error)
        }
    }
}

/// Counts of actions by queue and state, from ``Production/stats()``.
public struct QueueStats: Sendable, Hashable {
    /// The queue.
    public var queue: String
    /// Counts by state.
    public var counts: [ActionState: Int]
    /// The run-at time of the oldest due ready action, if any.
    public var oldestDue: Date?
    /// Whether the queue is paused.
    public var isPaused: Bool
    /// The queue's concurrency limit across all processes, if set.
    public var concurrencyLimit: Int?
}

extension Date {
    init(milliseconds: Int64) {
        self.init(timeIntervalSince1970: Double(milliseconds) / 1_000)
    }

    /// Milliseconds since 1970, clamped to ±`Clock.limit`; NaN counts as 1970.
    var milliseconds: Int64 {
        let value = (timeIntervalSince1970 * 1_000).rounded()
        guard !value.isNaN else { return 0 }
        if value >= Double(Clock.limit) { return Clock.limit }
        if value <= -Double(Clock.limit) { return -Clock.limit }
        return Int64(value)
    }
}
