import EchoSQLite

/// The version of the libsqlite3 this process linked.
var sqliteVersion: String { String(cString: sqlite3_libversion()) }
