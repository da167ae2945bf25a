import Echo
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension CrashTests {
    /// A producer killed mid-way through batch enqueues. Timeline: it enqueues batches of 1,000
    /// (`production.enqueue([NewAction])`, each action tagged with its batch in metadata), printing
    /// each acknowledged batch; a random 0–500 ms after the first acknowledgement it is SIGKILLed.
    /// 5 cycles on one database. Every batch is stored whole or not at all, and every acknowledged
    /// batch is stored.
    @Test func producerKilledMidBatchLeavesEveryBatchAllOrNone() async throws {
        let directory = try TemporaryDirectory()
        let database = directory.path()
        _ = try await seed(database, count: 1, tag: -1)
        var acknowledged: [Int64: (first: Int64, last: Int64)] = [:]
        for cycle in 0..<5 {
            let producer = try Child.worker(
                [
                    "produce", "--db", database, "--batch", "1000", "--batches", "100000", "--first-tag",
                    "\(cycle * 100_000)",
                ],
                in: directory.url.path, name: "batch\(cycle)")
            #expect(await producer.waitForLine { $0.hasPrefix("B ") } != nil, "\(producer.errorOutput.suffix(1_000))")
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...500)))
            await producer.killNow()
            for line in producer.lines() {
                let parts = line.split(separator: " ").compactMap { Int64($0) }
                if line.hasPrefix("B "), parts.count == 3 { acknowledged[parts[0]] = (parts[1], parts[2]) }
            }
        }
        let db = try CrashDatabase(path: database)
        #expect(try db.integrityCheck() == "ok")
        let batches = try db.pairs(
            """
            SELECT CAST(json_extract(metadata, '$.batch') AS INTEGER), count(*) FROM echo_actions
            WHERE metadata IS NOT NULL GROUP BY 1
            """)
        let partial = batches.filter { $0.1 != 1_000 }
        #expect(partial.isEmpty, "batches stored in part: \(partial.prefix(5))")
        let stored = Dictionary(batches, uniquingKeysWith: { a, _ in a })
        for (tag, range) in acknowledged {
            #expect(stored[tag] == 1_000, "acknowledged batch \(tag) is not stored whole")
            #expect(range.last - range.first == 999)
        }
        // At most one batch per kill committed without being acknowledged in time.
        #expect(stored.count >= acknowledged.count && stored.count <= acknowledged.count + 5)
        print(
            "[crash batch producer] 5 kills: \(acknowledged.count) batches acknowledged, \(stored.count) stored, 0 partial"
        )
    }

    /// Lease expiry and fencing. Timeline: worker A (a process, lease 1.5 s) claims the only
    /// action, whose function hangs until a file appears, and prints "started"; the test SIGSTOPs
    /// A; worker B claims the action once A's lease has expired, completes it and exits; the test
    /// creates the file and SIGCONTs A; A's function returns and A tries to commit its success:
    /// the fence (owner + attempt) rejects it. The final state, Karma and exactly-once ledger are B's.
    @Test func stoppedWorkerLosesItsLeaseAndItsLateCompletionIsRejected() async throws {
        let directory = try TemporaryDirectory()
        let database = directory.path()
        let ledger = directory.path("ledger.txt")
        let release = directory.path("release")
        let id = try #require(try await seed(database, count: 1).first)
        func arguments(_ name: String) -> [String] {
            [
                "work", "--db", database, "--worker", name, "--lease-ms", "1500", "--concurrency", "1",
                "--ledger-file", ledger, "--ledger-table", "--until-drained",
            ]
        }
        let a = try Child.worker(arguments("A") + ["--hang-until", release], in: directory.url.path, name: "A")
        defer { a.signal(SIGCONT); a.signal(SIGKILL) }
        let started = await a.waitForLine { $0.hasPrefix("started ") }
        #expect(started == "started \(id.rawValue) 1", "\(a.errorOutput.suffix(1_000))")
        a.signal(SIGSTOP)

        let b = try Child.worker(arguments("B"), in: directory.url.path, name: "B")
        defer { b.signal(SIGKILL) }
        #expect(await b.exitCode(timeout: .seconds(60)) == 0, "\(b.errorOutput.suffix(2_000))")
        do {
            let production = try await Production.open(path: database)
            let karma = try #require(try await production.karma(id))
            #expect(karma.outcome == .succeeded)
            #expect(try karma.decodeResult(as: CrashDone.self) == CrashDone(worker: "B", attempt: 2))
        }

        _ = FileManager.default.createFile(atPath: release, contents: nil)
        a.signal(SIGCONT)
        #expect(await a.exitCode(timeout: .seconds(60)) == 0, "\(a.errorOutput.suffix(2_000))")
        #expect(a.errorOutput.contains("outcome rejected: the lease was lost"), "\(a.errorOutput.suffix(2_000))")

        let production = try await Production.open(path: database)
        let record = try #require(try await production.action(id))
        #expect(record.state == .done)
        #expect(record.owner == nil)
        #expect(record.attempt == 2)
        let karma = try #require(try await production.karma(id))
        #expect(try karma.decodeResult(as: CrashDone.self) == CrashDone(worker: "B", attempt: 2))
        #expect(karma.attempts == 2)
        // A's effect in the success transaction was never applied; its outside effect happened.
        let db = try CrashDatabase(path: database)
        #expect(try db.rows("SELECT worker, attempt FROM test_ledger") == [["B", "2"]])
        let executions = String(decoding: FileManager.default.contents(atPath: ledger) ?? Data(), as: UTF8.self)
        #expect(executions.split(separator: "\n").sorted() == ["\(id.rawValue) A 1", "\(id.rawValue) B 2"])
    }

    /// Multi-process exactly-once. Timeline: 20,000 actions enqueued in batches; 4 worker
    /// processes start together and drain the queue (30 s leases, no crash), each exiting once
    /// nothing is ready or leased. Every action ran exactly once.
    @Test func fourWorkerProcessesRunEachOf20000ActionsExactlyOnce() async throws {
        let directory = try TemporaryDirectory()
        let database = directory.path()
        let ledger = directory.path("ledger.txt")
        let actions = 20_000
        let ids = try await seed(database, count: actions)
        let workers = try (0..<4).map { index in
            try Child.worker(
                [
                    "work", "--db", database, "--worker", "w\(index)", "--concurrency", "16", "--ledger-file", ledger,
                    "--ledger-table", "--until-drained",
                ],
                in: directory.url.path, name: "w\(index)")
        }
        defer { for worker in workers { worker.signal(SIGKILL) } }
        for worker in workers {
            #expect(await worker.exitCode(timeout: .seconds(180)) == 0, "\(worker.errorOutput.suffix(2_000))")
            #expect(errorLogLines(worker.errorOutput).isEmpty, "\(errorLogLines(worker.errorOutput).prefix(5))")
        }
        let executions = ledgerCounts(ledger)
        #expect(executions.count == actions)
        #expect(Set(executions.keys) == Set(ids.map(\.rawValue)))
        let repeated = executions.filter { $0.value != 1 }
        #expect(repeated.isEmpty, "actions run more than once: \(repeated.prefix(10))")
        let db = try CrashDatabase(path: database)
        #expect(try db.integrityCheck() == "ok")
        #expect(try db.int("SELECT count(*) FROM echo_actions WHERE state = 2 AND owner IS NULL") == Int64(actions))
        #expect(try db.int("SELECT count(*) FROM echo_karma WHERE outcome = 2 AND attempts = 1") == Int64(actions))
        #expect(try db.int("SELECT count(DISTINCT action_id) FROM test_ledger") == Int64(actions))
        #expect(try db.int("SELECT count(*) FROM test_ledger") == Int64(actions))
        let share = try db.rows("SELECT worker, count(*) FROM test_ledger GROUP BY worker ORDER BY worker")
        print("[crash multi-process] 4 workers, \(actions) actions, each run once; per worker: \(share)")
    }

    /// Contention. Timeline: on a new file, 3 producer processes (two with 16 concurrent single
    /// enqueues, one with batches of 100) and 2 worker processes start at once, all opening (and
    /// migrating) the database together; the workers drain once the producers have exited. No
    /// SQLITE_BUSY reaches a caller (a producer exits nonzero on any error; a worker logs every
    /// failed claim or commit at level error), and nothing is lost.
    @Test func producersAndWorkersInSeveralProcessesNeverSeeBusyAndLoseNothing() async throws {
        let directory = try TemporaryDirectory()
        let database = directory.path()
        let ledger = directory.path("ledger.txt")
        let gate = directory.path("producers-done")
        let workers = try (0..<2).map { index in
            try Child.worker(
                [
                    "work", "--db", database, "--worker", "w\(index)", "--concurrency", "8", "--ledger-file", ledger,
                    "--ledger-table", "--until-drained", "--drain-after", gate,
                ],
                in: directory.url.path, name: "w\(index)")
        }
        let singles = try (0..<2).map { index in
            try Child.worker(
                ["produce-single", "--db", database, "--count", "1500", "--concurrency", "16", "--tag", "\(index)"],
                in: directory.url.path, name: "single\(index)")
        }
        let batches = try Child.worker(
            ["produce", "--db", database, "--batch", "100", "--batches", "15", "--first-tag", "100"],
            in: directory.url.path, name: "batches")
        let everyone = workers + singles + [batches]
        defer { for child in everyone { child.signal(SIGKILL) } }
        for producer in singles + [batches] {
            #expect(await producer.exitCode(timeout: .seconds(120)) == 0, "\(producer.errorOutput.suffix(2_000))")
            #expect(!producer.errorOutput.lowercased().contains("busy"))
        }
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        for worker in workers {
            #expect(await worker.exitCode(timeout: .seconds(120)) == 0, "\(worker.errorOutput.suffix(2_000))")
            #expect(errorLogLines(worker.errorOutput).isEmpty, "\(errorLogLines(worker.errorOutput).prefix(5))")
        }
        let acknowledged = singles.flatMap { acknowledgedIDs($0.lines()) }
        #expect(acknowledged.count == 3_000)
        #expect(batches.lines().filter { $0.hasPrefix("B ") }.count == 15)
        let expected = 3_000 + 1_500
        let db = try CrashDatabase(path: database)
        #expect(try db.integrityCheck() == "ok")
        #expect(try db.int("SELECT count(*) FROM echo_actions") == Int64(expected))
        #expect(try db.int("SELECT count(*) FROM echo_actions WHERE state = 2") == Int64(expected))
        #expect(try db.int("SELECT count(*) FROM echo_karma WHERE outcome = 2") == Int64(expected))
        #expect(try db.int("SELECT count(DISTINCT action_id) FROM test_ledger") == Int64(expected))
        let stored = Set(try db.rows("SELECT id FROM echo_actions").compactMap { $0[0].flatMap { Int64($0) } })
        #expect(acknowledged.allSatisfy { stored.contains($0) })
        #expect(ledgerCounts(ledger).count == expected)
    }
}
