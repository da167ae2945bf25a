import Echo
internal import EchoSQLite
import Foundation
import Synchronization
import Testing

// Helpers shared by the core behaviour suites (EnqueueTests, ClaimTests, RetryTests, …).

/// A direct sqlite3 connection to an Echo database file, for asserting on rows the public API
/// does not show (and for setting up states, such as an old `finished_at`).
final class SQLiteFile {
    let handle: OpaquePointer

    init(path: String, readOnly: Bool = false, create: Bool = true) throws {
        var db: OpaquePointer?
        let flags =
            readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0)
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            if let db { sqlite3_close_v2(db) }
            throw SQLiteFileError(message: "cannot open \(path): \(rc)")
        }
        handle = db
        sqlite3_busy_timeout(db, 10_000)
    }

    deinit { sqlite3_close_v2(handle) }

    func execute(_ sql: String) throws {
        var errmsg: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &errmsg)
        if rc != SQLITE_OK {
            let message = errmsg.map { String(cString: $0) } ?? "code \(rc)"
            sqlite3_free(errmsg)
            throw SQLiteFileError(message: "\(message) in: \(sql)")
        }
    }

    /// Every row of a query, each column as text (`nil` for NULL).
    func rows(_ sql: String) throws -> [[String?]] {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &stmt, nil) == SQLITE_OK, let stmt else {
            throw SQLiteFileError(message: "\(String(cString: sqlite3_errmsg(handle))) in: \(sql)")
        }
        defer { sqlite3_finalize(stmt) }
        var rows: [[String?]] = []
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else {
                throw SQLiteFileError(message: "\(String(cString: sqlite3_errmsg(handle))) in: \(sql)")
            }
            let columns = sqlite3_column_count(stmt)
            rows.append(
                (0..<columns).map { column in
                    sqlite3_column_text(stmt, column).map { String(cString: $0) }
                })
        }
        return rows
    }

    /// The first column of the first row as an integer.
    func int(_ sql: String) throws -> Int64? {
        guard let text = try rows(sql).first?.first ?? nil else { return nil }
        return Int64(text)
    }

    /// The first column of the first row as text.
    func text(_ sql: String) throws -> String? {
        try rows(sql).first?.first ?? nil
    }

    /// Opens `path`, runs `body` and closes the connection again.
    static func with<T>(_ path: String, _ body: (SQLiteFile) throws -> T) throws -> T {
        let database = try SQLiteFile(path: path)
        return try body(database)
    }
}

struct SQLiteFileError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Counts events by key, from any task.
final class Tally: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    private let events = Mutex<[String]>([])

    init() {}

    @discardableResult
    func add(_ key: String) -> Int {
        events.withLock { $0.append(key) }
        return counts.withLock { counts in
            counts[key, default: 0] += 1
            return counts[key]!
        }
    }

    func count(_ key: String) -> Int { counts.withLock { $0[key] ?? 0 } }
    var all: [String: Int] { counts.withLock { $0 } }
    /// Every key added, in order.
    var log: [String] { events.withLock { $0 } }
}

/// A latch an action waits on until the test opens it.
final class Gate: Sendable {
    private let isOpen = Mutex(false)

    init() {}

    func open() { isOpen.withLock { $0 = true } }
    var opened: Bool { isOpen.withLock { $0 } }

    /// Waits until the gate opens (polling every 5 ms); honours cancellation only when asked to.
    func wait(ignoringCancellation: Bool = false) async throws {
        if ignoringCancellation {
            // An unstructured task does not inherit the caller's cancellation.
            await Task {
                while !self.opened { try? await Task.sleep(for: .milliseconds(5)) }
            }.value
            return
        }
        while !opened { try await Task.sleep(for: .milliseconds(5)) }
    }
}

/// Milliseconds since 1970, the unit of Echo's time columns.
func nowMilliseconds() -> Int64 {
    Int64((Date().timeIntervalSince1970 * 1_000).rounded())
}

extension Date {
    /// Milliseconds since 1970, as stored.
    var epochMilliseconds: Int64 { Int64((timeIntervalSince1970 * 1_000).rounded()) }
}

/// A Sequencer configuration for tests: fast polls and retries.
func testConfiguration(
    queues: [String] = ["default"],
    concurrency: Int = 8,
    leaseDuration: Duration = .seconds(30),
    minimumPollInterval: Duration = .milliseconds(5),
    maximumPollInterval: Duration = .milliseconds(50),
    shutdownGracePeriod: Duration = .seconds(5),
    backoff: Backoff = Backoff(base: .milliseconds(20), jitter: 0),
    defaultTimeout: Duration? = nil,
    owner: String? = nil
) -> Sequencer.Configuration {
    Sequencer.Configuration(
        queues: queues,
        concurrency: concurrency,
        leaseDuration: leaseDuration,
        minimumPollInterval: minimumPollInterval,
        maximumPollInterval: maximumPollInterval,
        shutdownGracePeriod: shutdownGracePeriod,
        backoff: backoff,
        defaultTimeout: defaultTimeout,
        owner: owner
    )
}

/// Waits until the action has Karma (it finished) and returns it.
func waitForKarma(
    _ production: Production, _ id: ActionID, timeout: Duration = .seconds(20),
    sourceLocation: SourceLocation = #_sourceLocation
) async throws -> KarmaRecord {
    let finished = try await eventually(timeout: timeout) { try await production.karma(id) != nil }
    #expect(finished, "action \(id) did not finish", sourceLocation: sourceLocation)
    return try #require(try await production.karma(id), sourceLocation: sourceLocation)
}

struct Number: Codable, Sendable, Equatable {
    var value: Int
}

struct Empty: Codable, Sendable, Equatable {}

struct TestFailure: Error, CustomStringConvertible {
    var text: String
    var description: String { text }
}
