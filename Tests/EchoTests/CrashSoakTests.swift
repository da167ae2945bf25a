import Echo
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension CrashTests {
    /// kill -9 soak. Timeline: 2,000 actions are enqueued; then, 40 times, a worker process starts
    /// (lease 1 s, 8 actions at once, each taking 20–60 ms) and is SIGKILLed after a random
    /// 50–800 ms — while it opens, claims, runs, or commits. A last worker runs until the queue is
    /// drained. Each execution appends to a ledger file before its outcome commits (the
    /// at-least-once side effect) and inserts into `test_ledger` through `onSuccess` (the
    /// exactly-once one).
    @Test func killNineSoakLosesNothingAndCommitsEachActionOnce() async throws {
        let directory = try TemporaryDirectory()
        let database = directory.path()
        let ledger = directory.path("ledger.txt")
        let actions = 2_000
        let cycles = 40
        let concurrency = 8
        let ids = try await seed(database, count: actions)
        #expect(ids.count == actions)

        func workerArguments(_ name: String) -> [String] {
            [
                "work", "--db", database, "--worker", name, "--lease-ms", "1000", "--concurrency", "\(concurrency)",
                "--min-delay-ms", "20", "--max-delay-ms", "60", "--ledger-file", ledger, "--ledger-table",
            ]
        }
        for cycle in 0..<cycles {
            let worker = try Child.worker(workerArguments("w\(cycle)"), in: directory.url.path, name: "w\(cycle)")
            try await Task.sleep(for: .milliseconds(Int.random(in: 50...800)))
            await worker.killNow()
        }
        let doneBeforeDrain = try CrashDatabase(path: database).int("SELECT count(*) FROM echo_actions WHERE state = 2")

        let last = try Child.worker(
            workerArguments("final") + ["--until-drained"], in: directory.url.path, name: "final")
        defer { last.signal(SIGKILL) }
        let code = await last.exitCode(timeout: .seconds(120))
        #expect(code == 0, "the last worker did not drain the queue: \(last.errorOutput.suffix(2_000))")
        #expect(errorLogLines(last.errorOutput).isEmpty, "\(errorLogLines(last.errorOutput).prefix(5))")

        let db = try CrashDatabase(path: database)
        #expect(try db.integrityCheck() == "ok")
        // Every action done, none stuck leased, none dead, none lost.
        #expect(try db.int("SELECT count(*) FROM echo_actions") == Int64(actions))
        #expect(try db.int("SELECT count(*) FROM echo_actions WHERE state != 2 OR owner IS NOT NULL") == 0)
        // One Karma row per action, each a success.
        #expect(try db.int("SELECT count(*) FROM echo_karma WHERE outcome = 2") == Int64(actions))
        #expect(
            try db.int(
                "SELECT count(*) FROM echo_actions a LEFT JOIN echo_karma k ON k.action_id = a.id WHERE k.action_id IS NULL"
            )
                == 0)
        // Exactly once: one test_ledger row per action, from the attempt whose result Karma holds.
        let perAction = try db.pairs("SELECT action_id, count(*) FROM test_ledger GROUP BY action_id")
        #expect(perAction.count == actions)
        #expect(perAction.allSatisfy { $0.1 == 1 })
        #expect(Set(perAction.map(\.0)) == Set(ids.map(\.rawValue)))
        #expect(
            try db.int(
                """
                SELECT count(*) FROM echo_karma k JOIN test_ledger l ON l.action_id = k.action_id
                WHERE json_extract(CAST(k.result AS TEXT), '$.worker') != l.worker
                    OR json_extract(CAST(k.result AS TEXT), '$.attempt') != l.attempt OR k.attempts != l.attempt
                """) == 0)

        // At least once: every action's outside side effect happened; repeats only for executions
        // in flight when a worker died. In flight per worker: up to `concurrency` running plus as
        // many finished and waiting for their outcome commit.
        let executions = ledgerCounts(ledger)
        let missing = ids.filter { executions[$0.rawValue, default: 0] == 0 }
        #expect(missing.isEmpty, "actions whose side effect never happened: \(missing.prefix(10))")
        let duplicates = executions.values.reduce(0) { $0 + max(0, $1 - 1) }
        let maxPerAction = executions.values.max() ?? 0
        let bound = (cycles + 1) * concurrency * 2
        #expect(duplicates <= bound, "\(duplicates) repeated executions for \(cycles) kills")
        #expect(maxPerAction <= cycles + 1)
        let repeated = executions.values.filter { $0 > 1 }.count
        print(
            "[crash soak] cycles: \(cycles) kill -9, actions: \(actions), done before the final drain: "
                + "\(doneBeforeDrain), executions: \(executions.values.reduce(0, +)), duplicates: \(duplicates) "
                + "(on \(repeated) actions, bound \(bound)), max executions per action: \(maxPerAction), "
                + "Karma rows: \(actions), test_ledger rows per action: 1")
    }

    /// kill -9 during group-committed enqueues. Timeline: a producer runs 32 concurrent single
    /// enqueues in a loop, printing each acknowledged id; after its first acknowledgement, a random
    /// 0–400 ms later, it is SIGKILLed — mid group commit. 8 cycles on one database. Every
    /// acknowledged id must be stored.
    @Test func killDuringGroupCommitKeepsEveryAcknowledgedEnqueue() async throws {
        let directory = try TemporaryDirectory()
        let database = directory.path()
        _ = try await seed(database, count: 1)
        var acknowledgedTotal = 0
        for cycle in 0..<8 {
            let producer = try Child.worker(
                ["produce-single", "--db", database, "--count", "1000000", "--concurrency", "32", "--tag", "\(cycle)"],
                in: directory.url.path, name: "producer\(cycle)")
            let first = await producer.waitForLine { $0.hasPrefix("A ") }
            #expect(first != nil, "the producer acknowledged nothing: \(producer.errorOutput.suffix(1_000))")
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...400)))
            await producer.killNow()

            let acknowledged = acknowledgedIDs(producer.lines())
            acknowledgedTotal += acknowledged.count
            let db = try CrashDatabase(path: database)
            #expect(try db.integrityCheck() == "ok")
            let stored = Set(
                try db.rows("SELECT id FROM echo_actions WHERE json_extract(CAST(payload AS TEXT), '$.tag') = \(cycle)")
                    .compactMap { $0[0].flatMap { Int64($0) } })
            let lost = acknowledged.filter { !stored.contains($0) }
            #expect(lost.isEmpty, "cycle \(cycle): \(lost.count) acknowledged enqueues lost, e.g. \(lost.prefix(5))")
            #expect(stored.count >= acknowledged.count)
        }
        #expect(acknowledgedTotal > 0)
        // Still a working queue.
        let production = try await Production.open(path: database)
        let id = try await production.enqueue("Soak", CrashJob(tag: -1, index: 0))
        #expect(try await production.action(id)?.state == .ready)
    }

    /// Power loss, simulated: the producer runs on a VFS that keeps a copy of the database and its
    /// WAL holding only what an fsync confirmed (see EchoTestWorker/ShadowVFS.swift). Timeline: 32
    /// concurrent single enqueues, SIGKILL a random 100–600 ms after the first acknowledgement,
    /// then the synced copies are opened as the database a power cut would have left. With
    /// synchronous FULL (the default) every acknowledged enqueue is in it. The control run with
    /// NORMAL shows the simulation has teeth: there, acknowledged enqueues are missing.
    @Test func synchronousFullKeepsEveryAcknowledgedEnqueueThroughSimulatedPowerLoss() async throws {
        for cycle in 0..<3 {
            let directory = try TemporaryDirectory()
            let database = directory.path()
            let producer = try Child.worker(
                ["produce-single", "--db", database, "--count", "1000000", "--concurrency", "32", "--shadow-vfs"],
                in: directory.url.path, name: "producer")
            let first = await producer.waitForLine { $0.hasPrefix("A ") }
            #expect(first != nil, "no acknowledgement: \(producer.errorOutput.suffix(1_000))")
            try await Task.sleep(for: .milliseconds(Int.random(in: 100...600)))
            await producer.killNow()
            #expect(producer.lines().first == "S 2", "the default must be synchronous FULL (2)")
            let acknowledged = acknowledgedIDs(producer.lines())
            #expect(!acknowledged.isEmpty)

            let image = try powerLossImage(of: database, in: directory)
            let db = try CrashDatabase(path: image)
            #expect(try db.integrityCheck() == "ok")
            let stored = Set(try db.rows("SELECT id FROM echo_actions").compactMap { $0[0].flatMap { Int64($0) } })
            let lost = acknowledged.filter { !stored.contains($0) }
            #expect(lost.isEmpty, "cycle \(cycle): \(lost.count) of \(acknowledged.count) acknowledged enqueues lost")
            print(
                "[crash power-loss FULL] cycle \(cycle): \(acknowledged.count) acknowledged, \(stored.count) survived")
        }

        // Control: NORMAL syncs the WAL only at checkpoints, so what was acknowledged since the
        // last one is not on the simulated disk.
        let directory = try TemporaryDirectory()
        let database = directory.path()
        let producer = try Child.worker(
            [
                "produce-single", "--db", database, "--count", "200", "--concurrency", "8", "--shadow-vfs",
                "--synchronous", "normal", "--then-hang",
            ],
            in: directory.url.path, name: "producer")
        #expect(await producer.waitForLine { $0 == "produced" } != nil, "\(producer.errorOutput.suffix(1_000))")
        await producer.killNow()
        #expect(producer.lines().first == "S 1")
        let acknowledged = acknowledgedIDs(producer.lines())
        #expect(acknowledged.count == 200)
        let db = try CrashDatabase(path: try powerLossImage(of: database, in: directory))
        #expect(try db.integrityCheck() == "ok")
        let survived =
            try db.tableExists("echo_actions") ? try db.int("SELECT count(*) FROM echo_actions") : 0
        #expect(survived < Int64(acknowledged.count), "the simulated power loss lost nothing even with NORMAL")
        print("[crash power-loss NORMAL control] \(acknowledged.count) acknowledged, \(survived) survived")
    }

    /// Copies the `.synced` shadows of `database` into a fresh folder as a database and its WAL
    /// (no -shm: SQLite rebuilds the index from the WAL, as after a reboot).
    private func powerLossImage(of database: String, in directory: borrowing TemporaryDirectory) throws -> String {
        let manager = FileManager.default
        let folder = directory.url.appendingPathComponent("power-loss-image")
        try manager.createDirectory(at: folder, withIntermediateDirectories: true)
        let image = folder.appendingPathComponent("echo.sqlite").path
        try manager.copyItem(atPath: database + ".synced", toPath: image)
        if manager.fileExists(atPath: database + "-wal.synced") {
            try manager.copyItem(atPath: database + "-wal.synced", toPath: image + "-wal")
        }
        return image
    }
}
