/// A write transaction on the Production's database, handed to the closures of
/// ``Production/transaction(_:)`` and ``ActionContext/onSuccess(_:)``.
///
/// Everything done through it commits together with the rest of its transaction, or not at all.
/// Use it only inside the closure that received it.
public struct Transaction {
    let connection: Connection
    let now: Int64

    init(connection: Connection, now: Int64) {
        self.connection = connection
        self.now = now
    }

    /// Runs an SQL statement with positional parameters (`?1`, `?2`, … or `?`).
    ///
    /// - Returns: The number of rows it changed.
    /// - Throws: ``ActionError`` with the SQLite code when the statement fails.
    @discardableResult
    public mutating func execute(_ sql: String, _ values: [SQLValue] = []) throws -> Int {
        let statement = try connection.uncachedStatement(sql)
        for (index, value) in values.enumerated() { statement.bind(Int32(index + 1), value) }
        try statement.run()
        return connection.changes
    }

    /// Runs a query and returns its rows.
    ///
    /// - Throws: ``ActionError`` with the SQLite code when the query fails.
    public mutating func query(_ sql: String, _ values: [SQLValue] = []) throws -> [[SQLValue]] {
        let statement = try connection.uncachedStatement(sql)
        for (index, value) in values.enumerated() { statement.bind(Int32(index + 1), value) }
        var rows: [[SQLValue]] = []
        while try statement.step() {
            rows.append((0..<statement.columnCount).map { statement.value($0) })
        }
        return rows
    }

    /// Enqueues an action in this transaction: it is stored if and only if the transaction commits.
    ///
    /// - Returns: The new action's id (or, with an idempotency key already stored, the stored one's).
    @discardableResult
    public mutating func enqueue(_ action: NewAction) throws -> ActionID {
        ActionID(try SQLiteStore.insert(action, now: now, on: connection))
    }

    /// Encodes `input` and enqueues it in this transaction.
    @discardableResult
    public mutating func enqueue<Input: Encodable>(
        _ name: Signature, _ input: Input, options: ActionOptions = ActionOptions()
    ) throws -> ActionID {
        try enqueue(NewAction(name, input, options: options))
    }
}
