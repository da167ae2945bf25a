import Echo
import EchoMigrations
import Foundation
import Testing

/// Item 13: a new file gets every migration; a file Echo must not touch is refused with a clear
/// error and left byte-for-byte as it was.
@Suite struct MigrationTests {
    static let echoApplicationID: Int64 = 0x4543_484F

    private func bytes(_ path: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: path))
    }

    private func expectRefused(
        _ path: String, code: ActionError.Code, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let before = try bytes(path)
        let siblings = try FileManager.default.contentsOfDirectory(atPath: (path as NSString).deletingLastPathComponent)
        do {
            _ = try await Production.open(path: path)
            Issue.record("opening \(path) should have failed with \(code)", sourceLocation: sourceLocation)
        } catch let error as ActionError {
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
            #expect(error.message.contains("untouched"), "\(error)", sourceLocation: sourceLocation)
        }
        #expect(try bytes(path) == before, "the refused file changed", sourceLocation: sourceLocation)
        let after = try FileManager.default.contentsOfDirectory(atPath: (path as NSString).deletingLastPathComponent)
        #expect(Set(after) == Set(siblings), "files appeared beside the refused one", sourceLocation: sourceLocation)
    }

    @Test func aNewDatabaseHasTheLatestSchema() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let raw = try SQLiteFile(path: directory.path())
        #expect(try raw.int("PRAGMA user_version") == Int64(SchemaMigration.latestVersion))
        #expect(try raw.int("PRAGMA application_id") == Self.echoApplicationID)
        #expect(try raw.text("PRAGMA journal_mode") == "wal")
        let tables = try raw.rows("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").compactMap(
            \.first)
        #expect(tables == ["echo_actions", "echo_karma", "echo_queues", "echo_schedules"])
        #expect(SchemaMigration.all.map(\.version) == Array(1...SchemaMigration.latestVersion))

        // Reopening changes nothing and keeps the data.
        let id = try await production.enqueue("Greet", Greeting(name: "kept"))
        production.close()
        let again = try await Production.open(path: directory.path())
        #expect(try await again.action(id)?.name == "Greet")
        #expect(try raw.int("PRAGMA user_version") == Int64(SchemaMigration.latestVersion))
    }

    @Test func anEmptyFileBecomesAnEchoDatabase() async throws {
        let directory = try TemporaryDirectory()
        _ = FileManager.default.createFile(atPath: directory.path(), contents: Data())
        let production = try await Production.open(path: directory.path())
        let id = try await production.enqueue("Greet", Greeting(name: "a"))
        #expect(try await production.action(id) != nil)
        #expect(
            try SQLiteFile(path: directory.path()).int("PRAGMA user_version") == Int64(SchemaMigration.latestVersion))
    }

    @Test func anOlderSchemaIsMigratedInPlace() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path()
        // A version-1 database with one action in it.
        try SQLiteFile.with(path) { raw in
            try raw.execute("PRAGMA journal_mode = WAL")
            try raw.execute(SchemaMigration.all[0].sql)
            try raw.execute("PRAGMA user_version = 1")
            try raw.execute("PRAGMA application_id = \(Self.echoApplicationID)")
            try raw.execute(
                """
                INSERT INTO echo_actions (id, queue, name, payload, state, run_at, created_at)
                VALUES (41, 'default', 'Greet', CAST('{"name":"old"}' AS BLOB), 0, 0, 0)
                """)
        }
        let production = try await Production.open(path: path)
        let raw = try SQLiteFile(path: path)
        #expect(try raw.int("PRAGMA user_version") == Int64(SchemaMigration.latestVersion))
        #expect(try raw.int("SELECT count(*) FROM sqlite_schema WHERE name = 'echo_queues'") == 1)
        let record = try #require(try await production.action(ActionID(41)))
        #expect(try JSONDecoder().decode(Greeting.self, from: Data(record.payload)) == Greeting(name: "old"))
        // And it runs.
        let plan = Plan().signature("Greet") { (input: Greeting, _: ActionContext) in Reply(text: input.name) }
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, ActionID(41)) }
        #expect(try karma.decodeResult(as: Reply.self) == Reply(text: "old"))
    }

    @Test func anOlderSchemaIsLeftAloneWhenMigratingIsNotAllowed() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path()
        try SQLiteFile.with(path) { raw in
            try raw.execute(SchemaMigration.all[0].sql)
            try raw.execute("PRAGMA user_version = 1")
            try raw.execute("PRAGMA application_id = \(Self.echoApplicationID)")
        }
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let error = await #expect(throws: ActionError.self) {
            try await Production.open(path: path, configuration: Production.Configuration(migratesSchema: false))
        }
        #expect(error?.code == .olderSchema)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
        // An up-to-date database opens without migrating.
        let current = directory.path("current.sqlite")
        _ = try await Production.open(path: current)
        _ = try await Production.open(path: current, configuration: Production.Configuration(migratesSchema: false))
    }

    @Test func concurrentOpensOfANewFileMigrateOnce() async throws {
        // Several rounds: the race between creating, switching to WAL and migrating is narrow.
        for _ in 0..<10 {
            let directory = try TemporaryDirectory()
            let path = directory.path()
            let productions = try await withThrowingTaskGroup(of: Production.self) { group in
                for _ in 0..<4 { group.addTask { try await Production.open(path: path) } }
                return try await group.reduce(into: [Production]()) { $0.append($1) }
            }
            #expect(productions.count == 4)
            #expect(try SQLiteFile(path: path).int("PRAGMA user_version") == Int64(SchemaMigration.latestVersion))
            for production in productions { try await production.enqueue("Greet", Greeting(name: "x")) }
            #expect(try SQLiteFile(path: path).int("SELECT count(*) FROM echo_actions") == 4)
        }
    }

    @Test func aFileThatIsNotSQLiteIsRefusedAndUntouched() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path("notes.sqlite")
        let text = String(repeating: "These are my notes, not a database.\n", count: 300)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        try await expectRefused(path, code: .notADatabase)
    }

    @Test func anotherApplicationsDatabaseIsRefusedAndUntouched() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path("app.sqlite")
        try SQLiteFile.with(path) { raw in
            try raw.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
            try raw.execute("INSERT INTO users (name) VALUES ('ada'), ('grace')")
        }
        try await expectRefused(path, code: .notEchoDatabase)
        #expect(try SQLiteFile(path: path).int("SELECT count(*) FROM users") == 2)
    }

    @Test func anotherApplicationsEmptyDatabaseIsRefused() async throws {
        let directory = try TemporaryDirectory()
        // No tables, but another application's id, or a version Echo did not write.
        let marked = directory.path("marked.sqlite")
        try SQLiteFile.with(marked) { raw in try raw.execute("PRAGMA application_id = 1234") }
        try await expectRefused(marked, code: .notEchoDatabase)
        let versioned = directory.path("versioned.sqlite")
        try SQLiteFile.with(versioned) { raw in try raw.execute("PRAGMA user_version = 7") }
        try await expectRefused(versioned, code: .notEchoDatabase)
    }

    @Test func aNewerEchoSchemaIsRefusedAndUntouched() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path("newer.sqlite")
        try SQLiteFile.with(path) { raw in
            try raw.execute(SchemaMigration.all[0].sql)
            try raw.execute("PRAGMA application_id = \(Self.echoApplicationID)")
            try raw.execute("PRAGMA user_version = \(SchemaMigration.latestVersion + 1)")
        }
        try await expectRefused(path, code: .newerSchema)
        #expect(try SQLiteFile(path: path).int("PRAGMA user_version") == Int64(SchemaMigration.latestVersion + 1))
    }
}
