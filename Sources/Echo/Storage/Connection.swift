internal import EchoSQLite

/// `SQLITE_TRANSIENT`: SQLite copies the bound bytes before the bind call returns.
let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// One SQLite connection. Not thread-safe: each is confined to one ``SerialDatabase``.
final class Connection {
    let handle: OpaquePointer
    let path: String
    private var statements: [String: Statement] = [:]

    /// Opens `path`. `readOnly` connections never write, so they never checkpoint or recover
    /// a WAL into the main file: they are used to inspect a file before Echo claims it.
    init(path: String, readOnly: Bool, create: Bool) throws(ActionError) {
        var db: OpaquePointer?
        var flags = readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE
        if create && !readOnly { flags |= SQLITE_OPEN_CREATE }
        flags |= SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let db { sqlite3_close_v2(db) }
            throw Connection.error(code: rc, message: "cannot open \(path): \(message)")
        }
        self.handle = db
        self.path = path
        sqlite3_extended_result_codes(db, 1)
    }

    deinit {
        statements.removeAll()
        sqlite3_close_v2(handle)
    }

    /// Runs one or more statements that return no rows.
    func execute(_ sql: String) throws(ActionError) {
        var errmsg: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &errmsg)
        if rc != SQLITE_OK {
            let message = errmsg.map { String(cString: $0) } ?? lastMessage
            sqlite3_free(errmsg)
            throw Connection.error(code: rc, message: message)
        }
    }

    /// A prepared statement for `sql`, prepared once per connection and reused.
    func statement(_ sql: String) throws(ActionError) -> Statement {
        if let cached = statements[sql] {
            cached.reset()
            return cached
        }
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else {
            throw Connection.error(code: rc, message: "\(lastMessage) in: \(sql)")
        }
        let statement = Statement(stmt, connection: self)
        statements[sql] = statement
        return statement
    }

    /// A statement prepared for one use only (for SQL text the caller supplies).
    /// Refuses text holding more than one statement: SQLite prepares only the first, and running
    /// it alone would silently drop the rest (comments and whitespace after it are fine).
    func uncachedStatement(_ sql: String) throws(ActionError) -> Statement {
        var stmt: OpaquePointer?
        var rc: Int32 = SQLITE_OK
        var hasMore = false
        sql.withCString { text in
            var tail: UnsafePointer<CChar>?
            rc = sqlite3_prepare_v2(handle, text, -1, &stmt, &tail)
            guard rc == SQLITE_OK, let tail, tail.pointee != 0 else { return }
            var next: OpaquePointer?
            if sqlite3_prepare_v2(handle, tail, -1, &next, nil) != SQLITE_OK || next != nil { hasMore = true }
            sqlite3_finalize(next)
        }
        guard rc == SQLITE_OK, let stmt else {
            let message = stmt == nil && rc == SQLITE_OK ? "no SQL statement" : lastMessage
            throw Connection.error(code: rc == SQLITE_OK ? SQLITE_ERROR : rc, message: "\(message) in: \(sql)")
        }
        if hasMore {
            sqlite3_finalize(stmt)
            throw ActionError(.invalidArgument, "give one SQL statement per call, not several: \(sql)")
        }
        return Statement(stmt, connection: self)
    }

    var lastMessage: String { String(cString: sqlite3_errmsg(handle)) }
    var changes: Int { Int(sqlite3_changes(handle)) }
    /// The rowid of the last successful INSERT on this connection.
    var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }
    var isReadOnly: Bool { sqlite3_db_readonly(handle, "main") == 1 }
    var isInTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    /// Reads a single integer, such as a PRAGMA's value.
    func integer(_ sql: String) throws(ActionError) -> Int64? {
        let statement = try uncachedStatement(sql)
        guard try statement.step() else { return nil }
        return statement.isNull(0) ? nil : statement.int64(0)
    }

    /// Maps an SQLite result code to Echo's error.
    static func error(code: Int32, message: String) -> ActionError {
        let primary = code & 0xff
        let kind: ActionError.Code
        switch primary {
        case SQLITE_BUSY, SQLITE_LOCKED: kind = .busy
        case SQLITE_FULL: kind = .full
        case SQLITE_READONLY: kind = .readOnly
        case SQLITE_CANTOPEN, SQLITE_PERM, SQLITE_AUTH: kind = .readOnly
        case SQLITE_NOTADB: kind = .notADatabase
        default: kind = .storage
        }
        var text = message
        if kind == .readOnly && primary == SQLITE_CANTOPEN {
            text += " (the file or its directory cannot be opened for writing)"
        }
        return ActionError(kind, text, sqliteCode: code)
    }
}

/// A prepared statement with typed binds and columns. Text is bound and read with explicit
/// lengths, so strings with NUL characters round-trip exactly.
final class Statement {
    let handle: OpaquePointer
    unowned let connection: Connection

    init(_ handle: OpaquePointer, connection: Connection) {
        self.handle = handle
        self.connection = connection
    }

    deinit { sqlite3_finalize(handle) }

    /// The first bind that SQLite refused since the last reset (a value over its length limit,
    /// out of memory); ``step()`` throws it rather than running with a parameter left NULL.
    private var bindFailure: Int32?

    func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        bindFailure = nil
    }

    private func check(_ rc: Int32) {
        if rc != SQLITE_OK && bindFailure == nil { bindFailure = rc }
    }

    func bind(_ index: Int32, _ value: Int64?) {
        if let value {
            check(sqlite3_bind_int64(handle, index, value))
        } else {
            check(sqlite3_bind_null(handle, index))
        }
    }

    func bind(_ index: Int32, _ value: Int?) {
        bind(index, value.map { Int64($0) })
    }

    func bind(_ index: Int32, _ value: String?) {
        guard let value else {
            check(sqlite3_bind_null(handle, index))
            return
        }
        var copy = value
        let rc = copy.withUTF8 { buffer -> Int32 in
            // A zero-length pointer must still be non-null for SQLite to bind '' rather than NULL.
            if buffer.count == 0 {
                return sqlite3_bind_text(handle, index, "", 0, sqliteTransient)
            }
            return buffer.withMemoryRebound(to: CChar.self) { chars in
                sqlite3_bind_text64(
                    handle, index, chars.baseAddress, sqlite3_uint64(chars.count), sqliteTransient,
                    UInt8(SQLITE_UTF8))
            }
        }
        check(rc)
    }

    func bind(_ index: Int32, _ value: [UInt8]?) {
        guard let value else {
            check(sqlite3_bind_null(handle, index))
            return
        }
        let rc = value.withUnsafeBytes { raw -> Int32 in
            if raw.count == 0 {
                return sqlite3_bind_zeroblob(handle, index, 0)
            }
            return sqlite3_bind_blob64(handle, index, raw.baseAddress, sqlite3_uint64(raw.count), sqliteTransient)
        }
        check(rc)
    }

    func bind(_ index: Int32, _ value: SQLValue) {
        switch value {
        case .null: check(sqlite3_bind_null(handle, index))
        case .integer(let v): bind(index, v)
        case .real(let v): check(sqlite3_bind_double(handle, index, v))
        case .text(let v): bind(index, v)
        case .blob(let v): bind(index, v)
        }
    }

    /// Steps once: `true` when a row is ready, `false` when done.
    @discardableResult
    func step() throws(ActionError) -> Bool {
        if let failure = bindFailure {
            reset()
            throw Connection.error(
                code: failure, message: "cannot bind a parameter: \(String(cString: sqlite3_errstr(failure)))")
        }
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            let message = connection.lastMessage
            sqlite3_reset(handle)
            throw Connection.error(code: rc, message: message)
        }
    }

    /// Steps to the end, for statements that return no rows.
    func run() throws(ActionError) {
        while try step() {}
    }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }
    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
    func int(_ column: Int32) -> Int { Int(sqlite3_column_int64(handle, column)) }
    func optionalInt(_ column: Int32) -> Int64? { isNull(column) ? nil : int64(column) }

    func string(_ column: Int32) -> String {
        guard let text = sqlite3_column_text(handle, column) else { return "" }
        let count = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
    }

    func optionalString(_ column: Int32) -> String? { isNull(column) ? nil : string(column) }

    func bytes(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(handle, column))
        guard count > 0, let raw = sqlite3_column_blob(handle, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: raw, count: count))
    }

    func optionalBytes(_ column: Int32) -> [UInt8]? { isNull(column) ? nil : bytes(column) }

    func value(_ column: Int32) -> SQLValue {
        switch sqlite3_column_type(handle, column) {
        case SQLITE_INTEGER: return .integer(int64(column))
        case SQLITE_FLOAT: return .real(sqlite3_column_double(handle, column))
        case SQLITE_TEXT: return .text(string(column))
        case SQLITE_BLOB: return .blob(bytes(column))
        default: return .null
        }
    }

    var columnCount: Int32 { sqlite3_column_count(handle) }
    func columnName(_ column: Int32) -> String { String(cString: sqlite3_column_name(handle, column)) }
}
