/// The name an action is routed by: the key of its function in a ``Plan``.
public struct Signature: Hashable, Sendable, Codable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The name as stored.
    public var name: String

    /// Creates a signature.
    public init(_ name: String) {
        self.name = name
    }

    /// Creates a signature from a literal.
    public init(stringLiteral value: String) {
        self.name = value
    }

    /// The name.
    public var description: String { name }

    /// Decodes the value from its single JSON value.
    public init(from decoder: any Decoder) throws {
        self.name = try decoder.singleValueContainer().decode(String.self)
    }

    /// Encodes the value as a single JSON value.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }
}

/// The identifier of a stored action: its row id, unique in its database file.
public struct ActionID: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    /// The row id.
    public var rawValue: Int64

    /// Wraps a row id.
    public init(_ rawValue: Int64) {
        self.rawValue = rawValue
    }

    /// The row id as text.
    public var description: String { String(rawValue) }

    /// Orders by row id (the order of enqueueing).
    public static func < (lhs: ActionID, rhs: ActionID) -> Bool { lhs.rawValue < rhs.rawValue }

    /// Decodes the value from its single JSON value.
    public init(from decoder: any Decoder) throws {
        self.rawValue = try decoder.singleValueContainer().decode(Int64.self)
    }

    /// Encodes the value as a single JSON value.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// Where an action is in its life.
public struct ActionState: Hashable, Sendable, CustomStringConvertible {
    /// The stored number.
    public let rawValue: Int

    init(rawValue: Int) { self.rawValue = rawValue }

    /// Waiting for its run-at time or for a worker.
    public static let ready = ActionState(rawValue: 0)
    /// Claimed by a worker, under a lease.
    public static let leased = ActionState(rawValue: 1)
    /// Finished successfully.
    public static let done = ActionState(rawValue: 2)
    /// Failed past its attempts (or could not be routed): a dead letter, kept until deleted.
    public static let dead = ActionState(rawValue: 3)
    /// Revoked before it ran.
    public static let cancelled = ActionState(rawValue: 4)

    /// All states, in stored order.
    public static let all: [ActionState] = [.ready, .leased, .done, .dead, .cancelled]

    /// `ready`, `leased`, `done`, `dead` or `cancelled`.
    public var description: String {
        switch rawValue {
        case 0: "ready"
        case 1: "leased"
        case 2: "done"
        case 3: "dead"
        case 4: "cancelled"
        default: "state\(rawValue)"
        }
    }

    /// Parses a state's name.
    public init?(name: String) {
        guard let state = ActionState.all.first(where: { $0.description == name }) else { return nil }
        self = state
    }
}
