import Synchronization

/// What every running action can reach: named hooks (``Span``), configuration (``Fate``) and
/// shared in-memory values (``Cache``). The outcome ledger is ``ActionContext/karma``.
public struct Life: Sendable {
    /// Named hooks that actions list in ``ActionOptions/hooks``.
    public var span: Span
    /// Read-only configuration values.
    public var fate: Fate
    /// Values shared by every action of this process.
    public var cache: Cache

    /// Creates a Life.
    public init(span: Span = Span(), fate: Fate = Fate(), cache: Cache = Cache()) {
        self.span = span
        self.fate = fate
        self.cache = cache
    }
}

/// Named hooks run before and after an action's function. An action names the hooks it wants in
/// ``ActionOptions/hooks``; a hook that throws fails the attempt (which is retried per the backoff),
/// and a hook name that is not registered fails it too.
public struct Span: Sendable {
    /// A hook's function.
    public typealias Hook = @Sendable (ActionContext) async throws -> Void

    struct Entry: Sendable {
        var before: Hook?
        var after: Hook?
    }
    var hooks: [String: Entry] = [:]

    /// An empty span.
    public init() {}

    /// Returns a span with the hook `name` added.
    ///
    /// - Parameters:
    ///   - name: The name actions use in ``ActionOptions/hooks``.
    ///   - before: Runs before the function.
    ///   - after: Runs after the function returned.
    public func hook(_ name: String, before: Hook? = nil, after: Hook? = nil) -> Span {
        var copy = self
        copy.hooks[name] = Entry(before: before, after: after)
        return copy
    }

    /// The names of the registered hooks.
    public var names: [String] { hooks.keys.sorted() }
}

/// Configuration values handed to every action: read-only while the Sequencer runs.
public struct Fate: Sendable, ExpressibleByDictionaryLiteral {
    /// The values.
    public var values: [String: String]

    /// Creates configuration from values.
    public init(_ values: [String: String] = [:]) { self.values = values }

    /// Creates configuration from a literal.
    public init(dictionaryLiteral elements: (String, String)...) {
        self.values = Dictionary(elements, uniquingKeysWith: { _, last in last })
    }

    /// The value for `key`.
    public subscript(key: String) -> String? { values[key] }
}

/// In-memory values shared by every action of the process (a connection pool, a counter).
/// Not durable.
public final class Cache: Sendable {
    private let storage = Mutex<[String: any Sendable]>([:])

    /// An empty cache.
    public init() {}

    /// The value for `key`, if it is of type `T`.
    public func value<T: Sendable>(_ key: String, as type: T.Type = T.self) -> T? {
        storage.withLock { $0[key] as? T }
    }

    /// Stores `value` for `key`.
    public func set(_ key: String, _ value: some Sendable) {
        storage.withLock { $0[key] = value }
    }

    /// Atomically replaces the value for `key` with `update(old)` and returns the new value.
    public func update<T: Sendable>(_ key: String, as type: T.Type = T.self, _ update: (T?) -> T) -> T {
        storage.withLock { storage in
            let new = update(storage[key] as? T)
            storage[key] = new
            return new
        }
    }

    /// Removes the value for `key`.
    public func remove(_ key: String) {
        storage.withLock { _ = $0.removeValue(forKey: key) }
    }
}

/// A thread-safe value cell, such as a running flag.
public final class Signal<Value: Sendable>: Sendable {
    private let cell: Mutex<Value>

    /// Creates a cell holding `value`.
    public init(_ value: Value) { self.cell = Mutex(value) }

    /// The current value.
    public var value: Value {
        get { cell.withLock { $0 } }
    }

    /// Replaces the value.
    public func set(_ value: Value) { cell.withLock { $0 = value } }

    /// Changes the value in place and returns what `body` returns.
    public func withValue<R: Sendable>(_ body: (inout Value) throws -> R) rethrows -> R {
        try cell.withLock { try body(&$0) }
    }
}
