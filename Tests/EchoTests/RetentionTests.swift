import Echo
import Foundation
import Testing

@Suite struct RetentionTests {
    /// Enqueues `count` actions and marks them done directly in the file, finished at
    /// `finishedAt + index` ms, with a Karma row each; plus one dead letter.
    private func seedFinished(_ path: String, count: Int, finishedAt: Int64) async throws -> ActionID {
        let production = try await Production.open(path: path)
        _ = try await production.enqueue((0..<count).map { try NewAction("Done", Greeting(name: "\($0)")) })
        let dead = try await production.enqueue("Dead", Greeting(name: "dead"))
        let file = try SQLiteFile(path: path)
        try file.execute(
            """
            UPDATE echo_actions SET state = CASE WHEN name = 'Dead' THEN 3 ELSE 2 END,
                finished_at = \(finishedAt) + id, attempt = 1;
            INSERT INTO echo_karma (action_id, queue, name, outcome, result, attempts, errors, enqueued_at,
                started_at, finished_at)
            SELECT id, queue, name, state, NULL, 1, NULL, created_at, created_at, finished_at FROM echo_actions;
            """)
        return dead
    }

    @Test func pruneKeepingNewestKeepsExactlyTheNewestAndTheDeadLetters() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path()
        let dead = try await seedFinished(path, count: 30, finishedAt: 1_000)
        let production = try await Production.open(path: path)
        let pruned = try await production.prune(keepingNewest: 10)
        #expect(pruned == 20)
        let file = try SQLiteFile(path: path)
        #expect(try file.int("SELECT count(*) FROM echo_actions WHERE state = 2") == 10)
        // The kept ones are the newest: ids 21…30 (finished_at grows with id).
        #expect(try file.int("SELECT min(id) FROM echo_actions WHERE state = 2") == 21)
        #expect(try file.int("SELECT count(*) FROM echo_karma WHERE outcome = 2") == 10)
        #expect(try await production.action(dead)?.state == .dead)
        #expect(try await production.karma(dead) != nil)
        #expect(try await production.prune(keepingNewest: 10) == 0)
        await #expect(throws: ActionError.self) { try await production.prune(keepingNewest: -1) }
    }

    @Test func pruneWorksInChunksThroughLargeBacklogs() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path()
        // More than two chunks of 5,000: every one must go, in several transactions.
        _ = try await seedFinished(path, count: 12_345, finishedAt: 1_000)
        let production = try await Production.open(path: path)
        #expect(try await production.prune(olderThan: .seconds(60)) == 12_345)
        let file = try SQLiteFile(path: path)
        #expect(try file.int("SELECT count(*) FROM echo_actions") == 1)
        #expect(try file.int("SELECT count(*) FROM echo_karma") == 1)
    }

    @Test func sequencerAppliesItsRetentionPeriodically() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path()
        let production = try await Production.open(path: path)
        let plan = Plan().signature("Greet") { (input: Greeting, _: ActionContext) in Reply(text: input.name) }
        let first = try await production.enqueue("Greet", Greeting(name: "old"))
        let sequencer = Sequencer(
            production: production, plan: plan,
            configuration: Sequencer.Configuration(
                minimumPollInterval: .milliseconds(5), maximumPollInterval: .milliseconds(20),
                retention: Retention(maximumAge: .milliseconds(200), interval: .milliseconds(50))))
        try await withRunning(sequencer) {
            _ = try await waitForKarma(production, first)
            // Finished, then older than 200 ms: the Sequencer's own pruning removes row and Karma.
            try await expectEventually { try await production.action(first) == nil }
            #expect(try await production.karma(first) == nil)
        }
        // Without retention, nothing is pruned.
        let kept = try await production.enqueue("Greet", Greeting(name: "kept"))
        let keeper = Sequencer(
            production: production, plan: plan,
            configuration: Sequencer.Configuration(minimumPollInterval: .milliseconds(5), retention: nil))
        try await withRunning(keeper) {
            _ = try await waitForKarma(production, kept)
            try await Task.sleep(for: .milliseconds(300))
        }
        #expect(try await production.action(kept)?.state == .done)
    }
}
