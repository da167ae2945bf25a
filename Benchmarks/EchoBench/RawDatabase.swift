import EchoMigrations
import EchoSQLite

/// `SQLITE_TRANSIENT`: SQLite copies bound bytes before the bind call returns.
private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// The baseline's connection: libsqlite3 used directly, statements prepared once.
///
/// Not thread-safe; each baseline workload uses its connection from one task only.
final class RawDatabase {
    let handle: OpaquePointer
    let path: String

    /// Opens `path` with the same settings as Echo's writer (WAL, `synchronous`, foreign keys,
    /// a busy timeout) and the same tables and indexes as Echo's migration V001.
    init(path: String, mode: Mode) throws(BenchError) {
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let db else {
            if let db { sqlite3_close_v2(db) }
            throw BenchError("cannot open \(path): SQLite code \(rc)")
        }
        self.handle = db
        self.path = path
        sqlite3_busy_timeout(db, 1_000)
        try execute("PRAGMA journal_mode = WAL")
        try execute("PRAGMA synchronous = \(mode.rawValue)")
        try execute("PRAGMA foreign_keys = ON")
        var exists: OpaquePointer?
        sqlite3_prepare_v2(handle, "SELECT 1 FROM sqlite_schema WHERE name = 'echo_actions'", -1, &exists, nil)
        let hasSchema = sqlite3_step(exists) == SQLITE_ROW
        sqlite3_finalize(exists)
        if !hasSchema { try execute(RawDatabase.schema) }
    }

    deinit {
        sqlite3_close_v2(handle)
    }

    /// Echo's tables and indexes, from the same migration Echo applies (Migrations/V001Initial.swift),
    /// so that both sides of every ratio do their row work on an identical schema.
    static var schema: String { SchemaMigration.all[0].sql }

    var message: String { String(cString: sqlite3_errmsg(handle)) }

    func execute(_ sql: String) throws(BenchError) {
        let rc = sqlite3_exec(handle, sql, nil, nil, nil)
        guard rc == SQLITE_OK else { throw BenchError("\(message) in: \(sql)") }
    }

    func prepare(_ sql: String) throws(BenchError) -> RawStatement {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw BenchError("\(message) in: \(sql)") }
        return RawStatement(stmt, database: self)
    }

    /// Runs `body` between `BEGIN IMMEDIATE` and `COMMIT`.
    func transaction<T>(_ body: () throws(BenchError) -> T) throws(BenchError) -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }
}

/// A prepared statement of a ``RawDatabase``.
final class RawStatement {
    let stmt: OpaquePointer
    unowned let database: RawDatabase

    init(_ stmt: OpaquePointer, database: RawDatabase) {
        self.stmt = stmt
        self.database = database
    }

    deinit { sqlite3_finalize(stmt) }

    func bind(_ index: Int32, _ value: Int64) { sqlite3_bind_int64(stmt, index, value) }
    func bind(_ index: Int32, _ value: String) { sqlite3_bind_text(stmt, index, value, -1, transient) }
    func bind(_ index: Int32, _ value: [UInt8]) {
        _ = value.withUnsafeBytes { sqlite3_bind_blob(stmt, index, $0.baseAddress, Int32($0.count), transient) }
    }
    func bindNull(_ index: Int32) { sqlite3_bind_null(stmt, index) }

    /// Steps once: `true` with a row, `false` when done.
    func step() throws(BenchError) -> Bool {
        switch sqlite3_step(stmt) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw BenchError("step failed: \(database.message)")
        }
    }

    /// Steps to the end and resets.
    func run() throws(BenchError) {
        while try step() {}
        reset()
    }

    func reset() { sqlite3_reset(stmt) }

    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(stmt, column) }
    func bytes(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(stmt, column))
        guard count > 0, let pointer = sqlite3_column_blob(stmt, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }
    func string(_ column: Int32) -> String {
        guard let text = sqlite3_column_text(stmt, column) else { return "" }
        return String(cString: text)
    }
}
