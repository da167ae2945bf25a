import Dispatch
internal import EchoSQLite
import Foundation
import Synchronization
import Testing

@testable import Echo

@Suite struct RobustnessTests {
    @Test func anOutcomeThatCannotBeStoredIsDeadLetteredWithoutStoppingTheOthers() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        // Values longer than 2,000 bytes now fail on the writer with SQLITE_TOOBIG: the huge result
        // cannot be stored however often the commit is retried.
        _ = try await production.store.writer.read { connection in
            sqlite3_limit(connection.handle, SQLITE_LIMIT_LENGTH, 2_000)
        }
        let plan = Plan().signature("Echo") { (input: Greeting, _: ActionContext) in
            Reply(text: input.name == "huge" ? String(repeating: "x", count: 10_000) : input.name)
        }
        let small = try await production.enqueue((0..<5).map { try NewAction("Echo", Greeting(name: "s\($0)")) })
        let huge = try await production.enqueue("Echo", Greeting(name: "huge"))
        let sequencer = Sequencer(
            production: production, plan: plan,
            configuration: Sequencer.Configuration(minimumPollInterval: .milliseconds(5)))
        try await withRunning(sequencer) {
            for id in small { _ = try await waitForKarma(production, id) }
            _ = try await waitForKarma(production, huge)
        }
        for id in small { #expect(try await production.karma(id)?.outcome == .succeeded) }
        let record = try #require(try await production.action(huge))
        #expect(record.state == .dead)
        #expect(record.errors.last?.message.contains("the outcome could not be stored") == true)
    }

    @Test func aClosedProductionRefusesEveryKindOfEnqueue() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        production.close()
        for attempt in 0..<3 {
            let error = await #expect(throws: ActionError.self) {
                switch attempt {
                case 0: try await production.enqueue("Greet", Greeting(name: "single"))
                case 1: try await production.enqueue([try NewAction("Greet", Greeting(name: "batch"))])
                default: try await production.transaction { tx in try tx.enqueue("Greet", Greeting(name: "tx")) }
                }
            }
            #expect(error?.code == .closed)
        }
        #expect(try await production.list().isEmpty)
    }

    @Test func severalStatementsInOneTransactionCallAreRefusedNotHalfRun() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        try await production.transaction { tx in
            try tx.execute("CREATE TABLE notes (body TEXT) -- a trailing comment is fine")
        }
        let error = await #expect(throws: ActionError.self) {
            try await production.transaction { tx in
                try tx.execute("INSERT INTO notes VALUES ('a'); INSERT INTO notes VALUES ('b')")
            }
        }
        #expect(error?.code == .invalidArgument)
        let rows = try await production.transaction { tx in try tx.query("SELECT count(*) FROM notes") }
        #expect(rows == [[.integer(0)]])
    }

    @Test func extremeTimesAreClampedNotTrapped() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let far = try await production.enqueue(
            "Greet", Greeting(name: "far"), options: ActionOptions(delay: .seconds(Int64.max)))
        let past = try await production.enqueue(
            "Greet", Greeting(name: "past"), options: ActionOptions(runAt: Date(timeIntervalSince1970: -.infinity)))
        let farRecord = try #require(try await production.action(far))
        #expect(farRecord.runAt > Date(timeIntervalSinceNow: 86_400 * 365 * 1_000))
        let pastRecord = try #require(try await production.action(past))
        #expect(pastRecord.runAt < Date(timeIntervalSince1970: 0))
        #expect(Clock.milliseconds(.seconds(Int64.min)) == -Clock.limit)
        #expect(Backoff(base: .seconds(Int64.max), factor: 10).delay(afterAttempt: 80) >= .zero)
    }

    @Test func aPayloadOverSQLitesLimitFailsOnlyItsOwnEnqueue() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        _ = try await production.store.writer.read { connection in
            sqlite3_limit(connection.handle, SQLITE_LIMIT_LENGTH, 2_000)
        }
        // Timeline: 20 concurrent enqueues share group commits; one carries a payload over the
        // limit. Only that caller fails (with the SQLite code), the 19 others are stored.
        let results = await withTaskGroup(of: (Int, Result<ActionID, any Error>).self) { group in
            for index in 0..<20 {
                group.addTask {
                    let name = index == 7 ? String(repeating: "y", count: 5_000) : "n\(index)"
                    let result = await Result(catching: {
                        try await production.enqueue("Greet", Greeting(name: name))
                    })
                    return (index, result)
                }
            }
            var results: [Int: Result<ActionID, any Error>] = [:]
            for await (index, result) in group { results[index] = result }
            return results
        }
        for (index, result) in results {
            switch result {
            case .success: #expect(index != 7)
            case .failure(let error):
                #expect(index == 7)
                #expect((error as? ActionError)?.sqliteCode == 18)
            }
        }
        #expect(try await production.list().count == 19)
    }

    @Test func finishedActionsShowTheirFinishTimeAsRunAt() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan().signature("Greet") { (input: Greeting, _: ActionContext) in Reply(text: input.name) }
        let done = try await production.enqueue("Greet", Greeting(name: "done"))
        let dead = try await production.enqueue("Unknown", Greeting(name: "dead"))
        let sequencer = Sequencer(
            production: production, plan: plan,
            configuration: Sequencer.Configuration(minimumPollInterval: .milliseconds(5)))
        try await withRunning(sequencer) {
            _ = try await waitForKarma(production, done)
            _ = try await waitForKarma(production, dead)
        }
        for id in [done, dead] {
            let record = try #require(try await production.action(id))
            // Not the lease expiry of the last claim (30 s after it started).
            #expect(record.finishedAt == record.runAt)
        }
    }

    @Test func enqueuesCarriedByAFailedWriteAreRequeuedNotFailed() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let store = production.store
        // Timeline: the writer's queue is blocked; a write that carries pending enqueues is queued;
        // ten enqueues gather in the pending list; the writer is released; the carrying write runs
        // first, takes the ten, and fails; they go back for their own group commit and succeed.
        let release = DispatchSemaphore(value: 0)
        store.writer.queue.async { release.wait() }
        struct Refused: Error { var rowsSeen: Int64 }
        let failing = Task {
            // Inside the carrying transaction: the ten enqueues are already inserted.
            try await store.writeCarryingEnqueues { connection -> Int in
                throw Refused(rowsSeen: try connection.integer("SELECT count(*) FROM echo_actions") ?? -1)
            }
        }
        // Let the carrying write reach the queue first (if it does not, rowsSeen is 0 and the test fails).
        try await Task.sleep(for: .milliseconds(200))
        let enqueues = Task {
            try await withThrowingTaskGroup(of: ActionID.self) { group in
                for index in 0..<10 {
                    group.addTask { try await production.enqueue("Greet", Greeting(name: "\(index)")) }
                }
                var ids: [ActionID] = []
                for try await id in group { ids.append(id) }
                return ids
            }
        }
        try await expectEventually { store.enqueueGroup.withLock { $0.pending.count } == 10 }
        release.signal()
        let refused = await #expect(throws: Refused.self) { try await failing.value }
        #expect(refused?.rowsSeen == 10)
        let ids = try await enqueues.value
        #expect(Set(ids).count == 10)
        #expect(try await production.list().count == 10)
    }

    @Test func aPruneStopsBetweenChunksWhenAskedTo() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path()
        let production = try await Production.open(path: path)
        _ = try await production.enqueue((0..<12_000).map { try NewAction("Done", Greeting(name: "\($0)")) })
        try SQLiteFile(path: path).execute("UPDATE echo_actions SET state = 2, finished_at = 1000 + id")
        // Asked to stop after the first chunk (as a Sequencer's retention does once shutdown begins).
        let pruned = try await production.prune(olderThan: .seconds(60), while: { false })
        #expect(pruned == Production.pruneChunk)
        #expect(try await production.list(limit: 20_000).count == 12_000 - Production.pruneChunk)
        // Without the stop, the rest goes.
        #expect(try await production.prune(olderThan: .seconds(60)) == 12_000 - Production.pruneChunk)
    }
}
