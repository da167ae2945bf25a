/// One versioned change of Echo's schema.
///
/// Migrations live in this folder, one file per version, and are compiled into the library
/// (not loaded from a resource bundle), so an Echo embedded in an installed binary anywhere on
/// disk migrates its database without files beside it. `Production.open` applies every version
/// above the database's `PRAGMA user_version` in order, each in its own transaction.
public struct SchemaMigration: Sendable {
    /// The version this migration brings the schema to; versions start at 1 and have no gaps.
    public let version: Int
    /// A short name, for logs and errors.
    public let name: String
    /// The SQL statements, run in one transaction.
    public let sql: String

    /// Creates a migration.
    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// Every migration, in version order.
    public static let all: [SchemaMigration] = [v001Initial, v002Queues]

    /// The schema version this build of Echo writes.
    public static var latestVersion: Int { all.last?.version ?? 0 }
}
