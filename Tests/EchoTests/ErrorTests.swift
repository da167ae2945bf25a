import Echo
import Foundation
import Testing

/// Item 14: storage errors carry the SQLite extended result code, and their kind is matchable.
@Suite struct ErrorTests {
    // SQLite result codes (sqlite.org/rescode.html).
    static let sqliteError: Int32 = 1
    static let sqliteFull: Int32 = 13
    static let sqliteNotADatabase: Int32 = 26
    static let sqliteConstraintPrimaryKey: Int32 = 1_555
    static let sqliteConstraintUnique: Int32 = 2_067

    @Test func aBadStatementCarriesItsSQLiteCode() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        await #expect {
            try await production.transaction { tx in try tx.execute("SELEKT nonsense") }
        } throws: { error in
            guard let error = error as? ActionError else { return false }
            return error.code == .storage && error.sqliteCode == Self.sqliteError
                && error.description.contains("SQLite code 1")
        }
    }

    @Test func constraintViolationsCarryTheExtendedCode() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        try await production.transaction { tx in
            try tx.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, ref TEXT UNIQUE)")
            try tx.execute("INSERT INTO orders (id, ref) VALUES (?, ?)", [1, "a"])
        }
        await #expect {
            try await production.transaction { tx in try tx.execute("INSERT INTO orders (id, ref) VALUES (1, 'b')") }
        } throws: { ($0 as? ActionError)?.sqliteCode == Self.sqliteConstraintPrimaryKey }
        await #expect {
            try await production.transaction { tx in try tx.execute("INSERT INTO orders (id, ref) VALUES (2, 'a')") }
        } throws: { ($0 as? ActionError)?.sqliteCode == Self.sqliteConstraintUnique }
    }

    @Test func aNonDatabaseCarriesNotADB() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path()
        try Data(String(repeating: "garbage ", count: 1_000).utf8).write(to: URL(fileURLWithPath: path))
        await #expect {
            try await Production.open(path: path)
        } throws: { error in
            guard let error = error as? ActionError else { return false }
            return error.code == .notADatabase && error.sqliteCode.map { $0 & 0xff } == Self.sqliteNotADatabase
        }
    }

    @Test func aFullDatabaseFailsWithFullAndStoresNothingOfTheFailedWrite() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(
            path: directory.path(), configuration: .init(maximumPageCount: 64))
        let payload = [UInt8](repeating: 0x61, count: 16_000)
        var stored: [ActionID] = []
        var failure: ActionError?
        for _ in 0..<100 {
            do {
                stored.append(try await production.enqueue(NewAction("Big", payload: payload)))
            } catch let error as ActionError {
                failure = error
                break
            }
        }
        let error = try #require(failure, "64 pages should not hold 100 payloads of 16 kB")
        #expect(error.code == .full)
        #expect(error.sqliteCode.map { $0 & 0xff } == Self.sqliteFull)
        // Every acknowledged enqueue is there, nothing more, and a batch fails as a whole.
        let raw = try SQLiteFile(path: directory.path())
        #expect(try raw.int("SELECT count(*) FROM echo_actions") == Int64(stored.count))
        await #expect {
            try await production.enqueue(Array(repeating: NewAction("Big", payload: payload), count: 10))
        } throws: { ($0 as? ActionError)?.code == .full }
        #expect(try raw.int("SELECT count(*) FROM echo_actions") == Int64(stored.count))
        // Small writes still work once space is freed.
        #expect(try await production.delete(stored[0]))
        #expect(try await production.enqueue("Small", Empty()).rawValue > 0)
    }

    @Test func errorDescriptionsNameTheirCode() {
        let error = ActionError(.busy, "locked", sqliteCode: 5)
        #expect(error.description == "busy: locked (SQLite code 5)")
        #expect(ActionError(.routing, "no such function").description == "routing: no such function")
        #expect(ActionError.Code.notEchoDatabase.description == "notEchoDatabase")
    }
}

@Suite struct LockedDatabaseTests {
    @Test func aLockHeldPastTheBusyTimeoutFailsWithBusyAndLosesNothing() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path()
        let production = try await Production.open(
            path: path, configuration: Production.Configuration(busyTimeout: .milliseconds(300)))
        let stored = try await production.enqueue("Greet", Greeting(name: "before"))
        // Timeline: another connection takes the write lock and keeps it past Echo's busy timeout;
        // the enqueue waits it out, then fails with `.busy`; the lock is released; the next enqueue
        // succeeds and the earlier action is intact.
        let other = try SQLiteFile(path: path)
        try other.execute("BEGIN IMMEDIATE")
        let error = await #expect(throws: ActionError.self) {
            try await production.enqueue("Greet", Greeting(name: "blocked"))
        }
        #expect(error?.code == .busy)
        #expect(error?.sqliteCode.map { $0 & 0xff } == 5)
        try other.execute("COMMIT")
        let after = try await production.enqueue("Greet", Greeting(name: "after"))
        #expect(after > stored)
        #expect(try await production.list().map(\.id) == [stored, after])
    }

    @Test func aLockHeldBrieflyIsWaitedOut() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path()
        let production = try await Production.open(path: path)
        let other = try SQLiteFile(path: path)
        try other.execute("BEGIN IMMEDIATE")
        // The lock is released 300 ms later, well within the 30 s default busy timeout.
        let release = Task {
            try await Task.sleep(for: .milliseconds(300))
            try other.execute("COMMIT")
        }
        let id = try await production.enqueue("Greet", Greeting(name: "waited"))
        try await release.value
        #expect(try await production.action(id)?.state == .ready)
    }
}
