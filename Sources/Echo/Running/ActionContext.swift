import Foundation
import Synchronization

/// What an action's function receives besides its input: who it is, its metadata, the Life of
/// the Sequencer, and ways to hand over work that commits with its success.
public final class ActionContext: Sendable {
    /// The action's id.
    public let id: ActionID
    /// Its name.
    public let name: Signature
    /// Its queue.
    public let queue: String
    /// This attempt's number (1 for the first).
    public let attempt: Int
    /// Attempts allowed before it is dead-lettered.
    public let maxAttempts: Int
    /// Its metadata.
    public let metadata: Vector
    /// The Sequencer's Life: hooks, configuration, shared cache.
    public let life: Life
    /// The outcome ledger of the production this action came from.
    public let karma: Karma
    /// The encoded input.
    public let payload: [UInt8]

    private struct Handover {
        var effects: [TransactionEffect] = []
        var next: [NewAction] = []
    }
    private let handover = Mutex(Handover())
    private let flags = Mutex((revoked: false, leaseLost: false))

    init(claimed: ClaimedAction, maxAttempts: Int, life: Life, karma: Karma) {
        self.id = ActionID(claimed.lease.id)
        self.name = claimed.name
        self.queue = claimed.queue
        self.attempt = claimed.lease.attempt
        self.maxAttempts = maxAttempts
        self.metadata = claimed.metadata
        self.life = life
        self.karma = karma
        self.payload = claimed.payload
    }

    /// Hands over writes to apply in the transaction that records this attempt's success; they are
    /// not applied if the attempt fails or its lease was lost, so data kept in the Echo database
    /// changes exactly once. If an effect throws, the attempt fails instead (and is retried).
    public func onSuccess(_ effect: @escaping @Sendable (inout Transaction) throws -> Void) {
        handover.withLock { $0.effects.append(effect) }
    }

    /// Enqueues `action` in the transaction that records this attempt's success.
    public func enqueueOnSuccess(_ action: NewAction) {
        handover.withLock { $0.next.append(action) }
    }

    /// Whether the action's license was revoked while it ran (seen at the last heartbeat).
    public var isRevoked: Bool { flags.withLock { $0.revoked } }

    /// Whether this attempt's lease was lost: another worker may be running the action, and this
    /// attempt's outcome will be rejected.
    public var isLeaseLost: Bool { flags.withLock { $0.leaseLost } }

    /// Throws the license error if the action's license was revoked while it ran; call it between
    /// steps of a long function to stop early.
    public func checkLicense() throws {
        if isRevoked { throw ActionError(.license, "the license of action \(id) was revoked") }
    }

    /// Ends the running attempt early (its task is cancelled) when the license is revoked.
    let abortHandle = AbortHandle()

    func markRevoked() {
        flags.withLock { $0.revoked = true }
        abortHandle.abort(with: ActionError(.license, "the license of action \(id) was revoked while it ran"))
    }
    func markLeaseLost() { flags.withLock { $0.leaseLost = true } }

    func takeHandover() -> (effects: [TransactionEffect], next: [NewAction]) {
        handover.withLock { ($0.effects, $0.next) }
    }
}

/// Read access to the Karma ledger: the durable record of what each finished action did.
public struct Karma: Sendable {
    let production: Production

    /// The Karma of action `id`, if it has finished.
    public func record(for id: ActionID) async throws -> KarmaRecord? {
        try await production.karma(id)
    }
}

extension Production {
    /// The Karma ledger of this production.
    public var ledger: Karma { Karma(production: self) }
}
