import Echo
import EchoMigrations
import Foundation
import Testing

/// Runs the real `echoctl` executable, built beside the test binary.
private func echoctl(_ arguments: [String], in directory: String) async throws -> (
    code: Int32?, output: String, error: String
) {
    let worker = try WorkerBinary.require()
    let binary = URL(fileURLWithPath: worker).deletingLastPathComponent().appendingPathComponent("echoctl").path
    let child = try Child.spawn([binary] + arguments, in: directory, name: "echoctl-\(UUID().uuidString)")
    let code = await child.exitCode(timeout: .seconds(60))
    let output = FileManager.default.contents(atPath: child.stdoutPath).map { String(decoding: $0, as: UTF8.self) }
    return (code, output ?? "", child.errorOutput)
}

private func json(_ text: String) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(text.utf8))
}

@Suite(.serialized) struct EchoCtlTests {
    /// A database with two ready actions in `default`, one in `mail`, and one dead letter.
    private func seeded(_ directory: borrowing TemporaryDirectory) async throws -> (String, [ActionID], ActionID) {
        let path = directory.path()
        let production = try await Production.open(path: path)
        let ids = try await production.enqueue([
            try NewAction("Greet", Greeting(name: "a")),
            try NewAction("Greet", Greeting(name: "b")),
            try NewAction("Mail", Greeting(name: "c"), options: ActionOptions(queue: "mail")),
        ])
        let doomed = try await production.enqueue("Nope", Greeting(name: "d"), options: ActionOptions(queue: "dead"))
        let sequencer = Sequencer(
            production: production, plan: Plan(),
            configuration: Sequencer.Configuration(queues: ["dead"], minimumPollInterval: .milliseconds(5)))
        try await withRunning(sequencer) {
            try await expectEventually { try await production.action(doomed)?.state == .dead }
        }
        return (path, ids, doomed)
    }

    @Test func statsListAndShowReadALiveDatabase() async throws {
        let directory = try TemporaryDirectory()
        let (path, ids, doomed) = try await seeded(directory)

        let stats = try await echoctl(["stats", "--db", path, "--json"], in: directory.url.path)
        #expect(stats.code == 0, "\(stats.error)")
        let rows = try #require(try json(stats.output) as? [[String: Any]])
        let byQueue = Dictionary(
            uniqueKeysWithValues: rows.compactMap { row in
                (row["queue"] as? String).map { ($0, row) }
            })
        #expect(byQueue["default"]?["ready"] as? Int == 2)
        #expect(byQueue["mail"]?["ready"] as? Int == 1)
        #expect(byQueue["dead"]?["dead"] as? Int == 1)

        let list = try await echoctl(["list", "--db", path, "--state", "dead", "--json"], in: directory.url.path)
        #expect(list.code == 0, "\(list.error)")
        let listed = try #require(try json(list.output) as? [[String: Any]])
        #expect(listed.count == 1)
        #expect(listed.first?["id"] as? Int == Int(doomed.rawValue))
        #expect((listed.first?["lastError"] as? String)?.contains("routing") == true)

        let page = try await echoctl(
            ["list", "--db", path, "--queue", "default", "--after", "\(ids[0].rawValue)", "--json"],
            in: directory.url.path)
        let paged = try #require(try json(page.output) as? [[String: Any]])
        #expect(paged.map { $0["id"] as? Int } == [Int(ids[1].rawValue)])

        let show = try await echoctl(["show", "\(doomed.rawValue)", "--db", path], in: directory.url.path)
        #expect(show.code == 0)
        #expect(show.output.contains("state dead"))
        #expect(show.output.contains("karma: dead"))
        #expect(show.output.contains("no function named Nope"))

        let table = try await echoctl(["stats", "--db", path], in: directory.url.path)
        #expect(table.output.hasPrefix("QUEUE"))
    }

    @Test func adminCommandsChangeTheDatabase() async throws {
        let directory = try TemporaryDirectory()
        let (path, ids, doomed) = try await seeded(directory)
        let dir = directory.url.path

        #expect(try await echoctl(["retry", "\(doomed.rawValue)", "--db", path], in: dir).code == 0)
        #expect(try await echoctl(["cancel", "\(ids[0].rawValue)", "--db", path], in: dir).code == 0)
        #expect(try await echoctl(["pause", "mail", "--db", path], in: dir).code == 0)
        #expect(try await echoctl(["limit", "default", "3", "--db", path], in: dir).code == 0)
        #expect(try await echoctl(["delete", "\(ids[1].rawValue)", "--db", path], in: dir).code == 0)
        // Deleting a missing action fails with a message and exit code 1.
        let missing = try await echoctl(["delete", "999999", "--db", path], in: dir)
        #expect(missing.code == 1)
        #expect(missing.error.contains("999999"))

        let production = try await Production.open(path: path)
        #expect(try await production.action(doomed)?.state == .ready)
        #expect(try await production.action(ids[0])?.state == .cancelled)
        #expect(try await production.karma(ids[0])?.outcome == .cancelled)
        #expect(try await production.action(ids[1]) == nil)
        let stats = try await production.stats()
        #expect(stats.first { $0.queue == "mail" }?.isPaused == true)
        #expect(stats.first { $0.queue == "default" }?.concurrencyLimit == 3)

        #expect(try await echoctl(["resume", "mail", "--db", path], in: dir).code == 0)
        #expect(try await production.stats().first { $0.queue == "mail" }?.isPaused == false)
        let pruned = try await echoctl(["prune", "--older-than", "0s", "--db", path, "--json"], in: dir)
        #expect(pruned.code == 0)
        #expect((try json(pruned.output) as? [String: Int])?["pruned"] == 1)  // the cancelled one
        #expect(try await production.action(ids[0]) == nil)
        let bad = try await echoctl(["prune", "--older-than", "soon", "--db", path], in: dir)
        #expect(bad.code != 0)
    }

    @Test func refusesForeignFilesAndNeverCreatesOne() async throws {
        let directory = try TemporaryDirectory()
        let dir = directory.url.path
        let foreign = directory.path("notes.txt")
        let bytes = Data("these are not the rows you are looking for\n".utf8)
        try bytes.write(to: URL(fileURLWithPath: foreign))
        let refused = try await echoctl(["stats", "--db", foreign], in: dir)
        #expect(refused.code == 1)
        #expect(refused.error.contains("not an SQLite database"))
        #expect(FileManager.default.contents(atPath: foreign) == bytes)

        // A database of an older Echo is refused, not upgraded under the application using it.
        let older = directory.path("older.sqlite")
        try SQLiteFile.with(older) { raw in
            try raw.execute(SchemaMigration.all[0].sql)
            try raw.execute("PRAGMA user_version = 1")
            try raw.execute("PRAGMA application_id = \(0x4543_484F)")
        }
        let olderBytes = try Data(contentsOf: URL(fileURLWithPath: older))
        let refusedOlder = try await echoctl(["stats", "--db", older], in: dir)
        #expect(refusedOlder.code == 1)
        #expect(refusedOlder.error.contains("olderSchema"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: older)) == olderBytes)

        let absent = directory.path("absent.sqlite")
        let missing = try await echoctl(["stats", "--db", absent], in: dir)
        #expect(missing.code == 1)
        #expect(!FileManager.default.fileExists(atPath: absent))
    }
}
