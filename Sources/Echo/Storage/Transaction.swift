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
    /// - Throws: ``ActionError`` with the SQLite code when the statement fails;
    ///   ``ActionError/Code/invalidArgument`` for a statement that would end the transaction.
    @discardableResult
    public mutating func execute(_ sql: String, _ values: [SQLValue] = []) throws -> Int {
        try Transaction.refuseTransactionControl(sql)
        let statement = try connection.uncachedStatement(sql)
        for (index, value) in values.enumerated() { statement.bind(Int32(index + 1), value) }
        try statement.run()
        return connection.changes
    }

    /// Runs a query and returns its rows.
    ///
    /// - Throws: ``ActionError`` with the SQLite code when the query fails;
    ///   ``ActionError/Code/invalidArgument`` for a statement that would end the transaction.
    public mutating func query(_ sql: String, _ values: [SQLValue] = []) throws -> [[SQLValue]] {
        try Transaction.refuseTransactionControl(sql)
        let statement = try connection.uncachedStatement(sql)
        for (index, value) in values.enumerated() { statement.bind(Int32(index + 1), value) }
        var rows: [[SQLValue]] = []
        while try statement.step() {
            rows.append((0..<statement.columnCount).map { statement.value($0) })
        }
        return rows
    }

    /// Refuses BEGIN, COMMIT, END, ROLLBACK, SAVEPOINT and RELEASE: they would commit or roll back
    /// Echo's transaction (or its savepoint) behind its back, and with it work of other callers
    /// that it carries, such as group-committed enqueues.
    static func refuseTransactionControl(_ sql: String) throws(ActionError) {
        var rest = Substring(sql)
        while true {
            rest = rest.drop(while: \.isWhitespace)
            if rest.hasPrefix("--") {
                rest = rest.drop(while: { $0 != "\n" })
            } else if rest.hasPrefix("/*") {
                guard let end = rest.firstRange(of: "*/") else { return }
                rest = rest[end.upperBound...]
            } else {
                break
            }
        }
        let keyword = rest.prefix(while: \.isLetter).uppercased()
        if ["BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"].contains(keyword) {
            throw ActionError(
                .invalidArgument, "\(keyword) is not allowed here: the transaction commits or rolls back as a whole")
        }
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
