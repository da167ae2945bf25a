import Foundation

/// The registry of named action functions. Built once, then read-only while Sequencers run.
///
/// ```swift
/// let plan = Plan()
///     .signature("Read") { (input: ReadInput, context: ActionContext) in
///         ReadOutput(length: try Data(contentsOf: URL(fileURLWithPath: input.path)).count)
///     }
/// ```
public struct Plan: Sendable {
    /// A registered function working on encoded input and output.
    public typealias Function = @Sendable (ActionContext) async throws -> [UInt8]

    /// Retry settings of one signature; `nil` fields take the defaults: the Sequencer's
    /// ``Sequencer/Configuration/backoff`` and ``Sequencer/Configuration/defaultTimeout``, and the
    /// production's ``Production/Configuration/defaultMaxAttempts``.
    public struct Policy: Sendable {
        /// Attempts before dead-lettering, unless the action itself says.
        public var maxAttempts: Int?
        /// The backoff between attempts.
        public var backoff: Backoff?
        /// The per-attempt timeout, unless the action itself says.
        public var timeout: Duration?

        /// Creates a policy.
        public init(maxAttempts: Int? = nil, backoff: Backoff? = nil, timeout: Duration? = nil) {
            self.maxAttempts = maxAttempts
            self.backoff = backoff
            self.timeout = timeout
        }
    }

    struct Entry: Sendable {
        var function: Function
        var policy: Policy
    }
    private(set) var entries: [Signature: Entry] = [:]

    /// An empty plan.
    public init() {}

    /// Returns a plan with a typed function registered under `name`.
    ///
    /// The input is decoded from the action's JSON payload; a payload that does not decode
    /// dead-letters the action with the decoding error (retrying cannot fix it). The output is
    /// encoded as JSON into the action's Karma.
    ///
    /// - Parameters:
    ///   - name: The signature actions are enqueued under.
    ///   - policy: Retry settings for this signature.
    ///   - body: The function.
    public func signature<Input: Decodable & Sendable, Output: Encodable & Sendable>(
        _ name: Signature,
        policy: Policy = Policy(),
        _ body: @escaping @Sendable (Input, ActionContext) async throws -> Output
    ) -> Plan {
        signature(
            name, policy: policy,
            encoded: { context in
                let input: Input
                do {
                    input = try JSONDecoder().decode(Input.self, from: Data(context.payload))
                } catch {
                    throw ActionError(
                        .decoding, "the payload of \(name) does not decode as \(Input.self): \(error)",
                        underlying: error)
                }
                let output = try await body(input, context)
                do {
                    return Array(try JSONEncoder().encode(output))
                } catch {
                    throw ActionError(.encoding, "cannot encode the output of \(name): \(error)", underlying: error)
                }
            })
    }

    /// Returns a plan with a function on encoded payloads registered under `name`.
    public func signature(_ name: Signature, policy: Policy = Policy(), encoded body: @escaping Function) -> Plan {
        var copy = self
        copy.entries[name] = Entry(function: body, policy: policy)
        return copy
    }

    /// The registered names.
    public var signatures: [Signature] { entries.keys.sorted { $0.name < $1.name } }

    /// Runs the function registered for the context's action.
    ///
    /// - Throws: ``ActionError/Code/routing`` when no function has that name, or what the
    ///   function throws.
    public func execute(_ context: ActionContext) async throws -> [UInt8] {
        guard let entry = entries[context.name] else {
            throw ActionError(.routing, "no function named \(context.name) in the Plan")
        }
        return try await entry.function(context)
    }

    func policy(for name: Signature) -> Policy {
        entries[name]?.policy ?? Policy()
    }
}

/// Receives each leased action and executes it. The default, ``PlanSite``, runs the action's
/// function from the Plan; a custom site can add routing, tracing or rate limits around it.
public protocol Site: Sendable {
    /// Executes the action and returns its encoded output.
    func execute(_ context: ActionContext, plan: Plan) async throws -> [UInt8]
}

/// The default ``Site``: runs the function the Plan has for the action's name.
public struct PlanSite: Site {
    /// Creates the default site.
    public init() {}

    /// Runs `plan.execute(context)`.
    public func execute(_ context: ActionContext, plan: Plan) async throws -> [UInt8] {
        try await plan.execute(context)
    }
}
