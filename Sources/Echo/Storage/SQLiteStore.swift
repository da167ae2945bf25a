internal import EchoMigrations
internal import EchoSQLite
import Foundation
import Logging
import Synchronization

/// Echo's storage on one SQLite file: a writer connection (every write, group-committed enqueues
/// included) and a reader connection, each on its own serial queue.
final class SQLiteStore: ActionStore {
    /// `PRAGMA application_id` of an Echo database: "ECHO" in ASCII.
    static let applicationID: Int64 = 0x4543_484F

    let path: String
    let writer: SerialDatabase
    let reader: SerialDatabase
    let logger: Logger
    let doorbell = Doorbell()
    let enqueueGroup = Mutex(EnqueueGroup())

    struct EnqueueGroup {
        var pending: [PendingEnqueue] = []
        var flushing = false
        var closed = false
    }

    struct PendingEnqueue {
        var action: NewAction
        var continuation: CheckedContinuation<Int64, any Error>
    }

    private init(path: String, writer: SerialDatabase, reader: SerialDatabase, logger: Logger) {
        self.path = path
        self.writer = writer
        self.reader = reader
        self.logger = logger
    }

    /// Opens (creating and migrating if needed) the database at `path`.
    static func open(path: String, configuration: Production.Configuration, logger: Logger) throws -> SQLiteStore {
        if !configuration.createIfMissing && !FileManager.default.fileExists(atPath: path) {
            throw ActionError(.notFound, "there is no database at \(path)")
        }
        // Another connection may hold a lock on the file for a moment (switching a new file to
        // WAL, migrating, recovering a WAL): SQLITE_BUSY then comes back without the busy handler
        // being called, so the whole open is tried again until the busy timeout has passed.
        let deadline = Clock.milliseconds() + Clock.milliseconds(configuration.busyTimeout)
        var pause: UInt32 = 1_000
        while true {
            do {
                return try openOnce(path: path, configuration: configuration, logger: logger)
            } catch let error as ActionError where error.code == .busy && Clock.milliseconds() < deadline {
                usleep(pause)
                pause = min(pause * 2, 100_000)
            }
        }
    }

    private static func openOnce(path: String, configuration: Production.Configuration, logger: Logger) throws
        -> SQLiteStore
    {
        let version = try inspect(path: path)
        if !configuration.migratesSchema && version < Int64(SchemaMigration.latestVersion) {
            throw ActionError(
                .olderSchema,
                "\(path) has schema version \(version); this Echo writes version \(SchemaMigration.latestVersion) "
                    + "and was asked not to migrate, so it left the file untouched")
        }
        let writerConnection = try Connection(path: path, readOnly: false, create: true)
        if writerConnection.isReadOnly {
            throw ActionError(.readOnly, "\(path) is read-only: Echo needs to write its database")
        }
        try configure(writerConnection, configuration: configuration)
        do {
            let mode = try writerConnection.uncachedStatement("PRAGMA journal_mode = WAL")
            let isWAL = try mode.step() && mode.string(0).lowercased() == "wal"
            mode.reset()
            guard isWAL else { throw ActionError(.storage, "\(path): cannot switch to WAL journal mode") }
        }
        try migrate(writerConnection, path: path, logger: logger)

        let readerConnection = try Connection(path: path, readOnly: false, create: false)
        try configure(readerConnection, configuration: configuration)
        let busy = Clock.milliseconds(configuration.busyTimeout)
        return SQLiteStore(
            path: path,
            writer: SerialDatabase(connection: writerConnection, label: "echo.writer", busyDeadlineMilliseconds: busy),
            reader: SerialDatabase(connection: readerConnection, label: "echo.reader", busyDeadlineMilliseconds: busy),
            logger: logger
        )
    }

    private static func configure(_ connection: Connection, configuration: Production.Configuration) throws {
        // The busy handler waits up to a second per attempt; `SerialDatabase` retries
        // `BEGIN IMMEDIATE` until `configuration.busyTimeout` has passed.
        sqlite3_busy_timeout(connection.handle, Int32(min(1_000, Clock.milliseconds(configuration.busyTimeout))))
        try connection.execute("PRAGMA synchronous = \(configuration.synchronous.pragma)")
        try connection.execute("PRAGMA foreign_keys = ON")
        if let pages = configuration.maximumPageCount {
            try connection.execute("PRAGMA max_page_count = \(pages)")
        }
    }

    /// Refuses a file that is not SQLite, not Echo's, or from a newer Echo, before anything writes
    /// to it. A read-only connection never recovers or checkpoints a WAL, so the file's bytes stay
    /// as they were.
    ///
    /// - Returns: The file's Echo schema version; 0 for an empty or new file.
    @discardableResult
    static func inspect(path: String) throws -> Int64 {
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil
        guard let size, size > 0 else { return 0 }
        let connection: Connection
        do {
            connection = try Connection(path: path, readOnly: true, create: false)
        } catch {
            if error.code == .readOnly {
                throw ActionError(.readOnly, "cannot open \(path) for reading", sqliteCode: error.sqliteCode)
            }
            throw error
        }
        sqlite3_busy_timeout(connection.handle, 1_000)
        let tables: Int64
        do {
            tables = try connection.integer("SELECT count(*) FROM sqlite_schema") ?? 0
        } catch {
            if error.code == .notADatabase || error.sqliteCode.map({ $0 & 0xff == SQLITE_CORRUPT }) == true {
                throw ActionError(
                    .notADatabase, "\(path) is not an SQLite database; Echo left it untouched",
                    sqliteCode: error.sqliteCode)
            }
            if error.code == .readOnly {
                // A WAL database is read through its -shm file, which a read-only directory or
                // file system does not let SQLite create.
                throw ActionError(
                    .readOnly,
                    "cannot read \(path): its directory or file system cannot be written (\(error.message))",
                    sqliteCode: error.sqliteCode)
            }
            throw error
        }
        let application = try connection.integer("PRAGMA application_id") ?? 0
        let version = try connection.integer("PRAGMA user_version") ?? 0
        if application != applicationID {
            if tables > 0 || version != 0 || application != 0 {
                throw ActionError(
                    .notEchoDatabase,
                    "\(path) is an SQLite database of another application (application_id \(application), "
                        + "\(tables) schema entries); Echo left it untouched")
            }
            return 0
        }
        if version > Int64(SchemaMigration.latestVersion) {
            throw ActionError(
                .newerSchema,
                "\(path) has schema version \(version), written by a newer Echo; this Echo knows up to "
                    + "version \(SchemaMigration.latestVersion) and left the file untouched")
        }
        return version
    }

    /// Applies every migration above the file's version, each in its own transaction.
    /// The version is read again inside the transaction, so two processes opening one new file
    /// at once apply each migration once.
    static func migrate(_ connection: Connection, path: String, logger: Logger) throws {
        for migration in SchemaMigration.all {
            try connection.execute("BEGIN IMMEDIATE")
            do {
                let version = try connection.integer("PRAGMA user_version") ?? 0
                let application = try connection.integer("PRAGMA application_id") ?? 0
                let tables = try connection.integer("SELECT count(*) FROM sqlite_schema") ?? 0
                if application != applicationID && (tables > 0 || version != 0) {
                    throw ActionError(.notEchoDatabase, "\(path) became another application's database")
                }
                if version > Int64(SchemaMigration.latestVersion) {
                    throw ActionError(.newerSchema, "\(path) has schema version \(version), newer than this Echo's")
                }
                if version < Int64(migration.version) {
                    try connection.execute(migration.sql)
                    try connection.execute("PRAGMA user_version = \(migration.version)")
                    try connection.execute("PRAGMA application_id = \(applicationID)")
                    logger.info(
                        "applied migration",
                        metadata: ["path": "\(path)", "version": "\(migration.version)", "name": "\(migration.name)"])
                }
                try connection.execute("COMMIT")
            } catch {
                try? connection.execute("ROLLBACK")
                throw error
            }
        }
    }

    func close() {
        let pending = enqueueGroup.withLock { group in
            group.closed = true
            let pending = group.pending
            group.pending = []
            return pending
        }
        for item in pending {
            item.continuation.resume(throwing: ActionError(.closed, "the production was closed"))
        }
    }
}
