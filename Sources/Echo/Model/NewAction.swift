public import Foundation

/// Per-action options for ``Production/enqueue(_:_:options:)``.
public struct ActionOptions: Sendable, Codable, Hashable {
    /// The queue the action waits in; a ``Sequencer`` serves the queues it is configured with.
    /// The default is `"default"`.
    public var queue: String
    /// Higher runs first among due actions of a queue. The default is 0.
    public var priority: Int
    /// Run no earlier than this time. The default, `nil`, is now (or ``delay`` from now).
    public var runAt: Date?
    /// Run no earlier than this long after enqueueing. Ignored when ``runAt`` is set.
    public var delay: Duration?
    /// How many attempts before the action is dead-lettered. The default, `nil`, takes the
    /// Plan signature's setting, else the production's ``Production/Configuration/defaultMaxAttempts``.
    public var maxAttempts: Int?
    /// A second enqueue with the same key inserts nothing and returns the first action's id,
    /// for as long as that action's row is kept. The default is `nil`: no key.
    public var idempotencyKey: String?
    /// Metadata stored with the action. The default is empty.
    public var metadata: Vector
    /// Names of hooks in ``Life/span`` to run before and after the function. The default is none.
    public var hooks: [String]
    /// An attempt running longer than this is cancelled and counts as a failure. The default,
    /// `nil`, takes the signature's or the Sequencer's timeout.
    public var timeout: Duration?

    /// Creates options; every parameter has the default described on its property.
    public init(
        queue: String = "default",
        priority: Int = 0,
        runAt: Date? = nil,
        delay: Duration? = nil,
        maxAttempts: Int? = nil,
        idempotencyKey: String? = nil,
        metadata: Vector = [:],
        hooks: [String] = [],
        timeout: Duration? = nil
    ) {
        self.queue = queue
        self.priority = priority
        self.runAt = runAt
        self.delay = delay
        self.maxAttempts = maxAttempts
        self.idempotencyKey = idempotencyKey
        self.metadata = metadata
        self.hooks = hooks
        self.timeout = timeout
    }
}

/// An action ready to be enqueued: a signature, an encoded payload and options.
///
/// Build one with ``init(_:_:options:next:)`` to enqueue in a batch, or to chain it as the
/// ``next`` action of another: the next action is enqueued in the same transaction that records
/// the first one's success.
public struct NewAction: Sendable, Codable, Hashable {
    /// The function's name in the Plan.
    public var name: Signature
    /// The encoded input (JSON).
    public var payload: [UInt8]
    /// The options.
    public var options: ActionOptions
    /// Encoded chain of actions to enqueue when this one succeeds (outermost first).
    var nextPayload: [UInt8]?

    /// Encodes `input` as the action's payload.
    ///
    /// - Parameters:
    ///   - name: The function's name in the Plan.
    ///   - input: The function's input, encoded as JSON.
    ///   - options: Queue, priority, delay and the rest.
    ///   - next: An action to enqueue in the same transaction that records this one's success.
    /// - Throws: ``ActionError`` with code ``ActionError/Code/encoding`` when `input` cannot be encoded.
    public init<Input: Encodable>(
        _ name: Signature,
        _ input: Input,
        options: ActionOptions = ActionOptions(),
        next: NewAction? = nil
    ) throws {
        self.name = name
        do {
            self.payload = Array(try JSONEncoder().encode(input))
            self.nextPayload = try next.map { Array(try JSONEncoder().encode($0)) }
        } catch {
            throw ActionError(.encoding, "cannot encode the input of \(name): \(error)", underlying: error)
        }
        self.options = options
    }

    /// Creates an action from an already encoded payload.
    public init(_ name: Signature, payload: [UInt8], options: ActionOptions = ActionOptions()) {
        self.name = name
        self.payload = payload
        self.options = options
        self.nextPayload = nil
    }

    /// The action enqueued when this one succeeds, if any.
    public var next: NewAction? {
        guard let nextPayload else { return nil }
        return try? JSONDecoder().decode(NewAction.self, from: Data(nextPayload))
    }
}
