import Foundation
import Testing

@testable import Echo

/// Item 15: retention and the administration of dead letters, queues and listings.
@Suite struct AdminTests {
    /// Runs one succeeding, one dead-lettered and one cancelled action, and returns their ids.
    private func finishThree(_ production: Production) async throws -> (
        done: ActionID, dead: ActionID, cancelled: ActionID
    ) {
        let plan = Plan()
            .signature("Good") { (input: Number, _: ActionContext) in input }
            .signature("Bad") { (_: Empty, _: ActionContext) -> Empty in throw TestFailure(text: "bad") }
        let done = try await production.enqueue("Good", Number(value: 1))
        let dead = try await production.enqueue("Bad", Empty(), options: ActionOptions(maxAttempts: 1))
        let cancelled = try await production.enqueue(
            "Good", Number(value: 2), options: ActionOptions(delay: .seconds(600)))
        #expect(try await production.revoke(cancelled))
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        try await withRunning(sequencer) {
            _ = try await waitForKarma(production, done)
            _ = try await waitForKarma(production, dead)
        }
        return (done, dead, cancelled)
    }

    @Test func pruneDeletesOldDoneRowsAndKarmaButKeepsDeadLetters() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let old = try await finishThree(production)
        // Age them by two hours.
        let raw = try SQLiteFile(path: directory.path())
        try raw.execute("UPDATE echo_actions SET finished_at = finished_at - 7200000 WHERE finished_at IS NOT NULL")
        try raw.execute("UPDATE echo_karma SET finished_at = finished_at - 7200000")
        let recent = try await finishThree(production)

        let pruned = try await production.prune(olderThan: .seconds(3_600))
        #expect(pruned == 2)
        #expect(try await production.action(old.done) == nil)
        #expect(try await production.karma(old.done) == nil)
        #expect(try await production.action(old.cancelled) == nil)
        #expect(try await production.karma(old.cancelled) == nil)
        // Dead letters are kept whatever their age, with their Karma.
        #expect(try await production.action(old.dead)?.state == .dead)
        #expect(try await production.karma(old.dead)?.outcome == .deadLettered)
        // Recent rows are kept.
        for id in [recent.done, recent.dead, recent.cancelled] {
            #expect(try await production.action(id) != nil)
            #expect(try await production.karma(id) != nil)
        }
        #expect(try raw.int("SELECT count(*) FROM echo_karma") == 4)
        #expect(try await production.prune(olderThan: .seconds(3_600)) == 0)
    }

    @Test func deadLettersCanBeListedRetriedAndDeleted() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let healed = Tally()
        let plan = Plan().signature("Fragile") { (input: Number, _: ActionContext) -> Number in
            if healed.count("healed") == 0 { throw TestFailure(text: "broken \(input.value)") }
            return input
        }
        let ids = try await production.enqueue(
            (0..<4).map {
                try NewAction(
                    "Fragile", Number(value: $0), options: ActionOptions(queue: $0 < 3 ? "a" : "b", maxAttempts: 1))
            })
        let sequencer = Sequencer(
            production: production, plan: plan, configuration: testConfiguration(queues: ["a", "b"]))
        try await withRunning(sequencer) {
            try await expectEventually { try await production.deadLetters().count == 4 }
        }
        let letters = try await production.deadLetters()
        #expect(letters.map(\.id) == ids)
        #expect(letters.allSatisfy { $0.errors.count == 1 && $0.errors[0].message.contains("broken") })
        #expect(try await production.deadLetters(queue: "b").map(\.id) == [ids[3]])
        #expect(try await production.deadLetters(after: ids[1], limit: 1).map(\.id) == [ids[2]])

        // Retry one: ready again, fresh attempts, history kept, Karma gone until it finishes again.
        #expect(try await production.retry(ids[0]))
        #expect(try await production.retry(ids[0]) == false)
        let retried = try #require(try await production.action(ids[0]))
        #expect(retried.state == .ready)
        #expect(retried.attempt == 0)
        #expect(retried.errors.count == 1)
        #expect(retried.finishedAt == nil)
        #expect(try await production.karma(ids[0]) == nil)

        // Delete one; retry the rest of queue "a".
        #expect(try await production.delete(ids[1]))
        #expect(try await production.action(ids[1]) == nil)
        #expect(try await production.karma(ids[1]) == nil)
        #expect(try await production.retryDeadLetters(queue: "a") == 1)
        #expect(try await production.deadLetters().map(\.id) == [ids[3]])

        healed.add("healed")
        try await withRunning(sequencer) {
            let first = try await waitForKarma(production, ids[0])
            #expect(first.outcome == .succeeded)
            #expect(first.attempts == 1)
            #expect(first.errors.count == 1)
            #expect(try await waitForKarma(production, ids[2]).outcome == .succeeded)
        }
        #expect(try await production.deleteDeadLetters() == 1)
        #expect(try await production.deadLetters().isEmpty)
        #expect(try await production.karma(ids[3]) == nil)
        #expect(try await production.list().map(\.id) == [ids[0], ids[2]])
    }

    @Test func aLeasedActionCannotBeDeleted() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let id = try await production.enqueue("Greet", Greeting(name: "a"))
        _ = try await production.store.claim(
            queue: "default", owner: "A", limit: 1, leaseUntil: nowMilliseconds() + 60_000, defaultMaxAttempts: 3)
        #expect(try await production.delete(id) == false)
        #expect(try await production.action(id)?.state == .leased)
        #expect(try await production.retry(id) == false)
    }

    @Test func listFiltersAndPages() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let a = try await production.enqueue(
            (0..<5).map { try NewAction("A", Number(value: $0), options: ActionOptions(queue: "q1")) })
        let b = try await production.enqueue(
            (0..<3).map { try NewAction("B", Number(value: $0), options: ActionOptions(queue: "q2")) })
        #expect(try await production.list().map(\.id) == a + b)
        #expect(try await production.list(queue: "q2").map(\.id) == b)
        #expect(try await production.list(name: "A").map(\.id) == a)
        #expect(try await production.list(state: .done).isEmpty)
        #expect(try await production.list(limit: 3).map(\.id) == Array(a[0..<3]))
        #expect(try await production.list(after: a[2], limit: 3).map(\.id) == [a[3], a[4], b[0]])
    }

    @Test func statsCountByQueueAndState() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        _ = try await finishThree(production)
        try await production.enqueue("Good", Number(value: 3), options: ActionOptions(queue: "other"))
        try await production.pause(queue: "other")
        try await production.setConcurrencyLimit(2, queue: "other")
        let stats = try await production.stats()
        #expect(stats.map(\.queue) == ["default", "other"])
        let main = stats[0]
        #expect(main.counts[.done] == 1)
        #expect(main.counts[.dead] == 1)
        #expect(main.counts[.cancelled] == 1)
        #expect(main.counts[.ready] == nil)
        #expect(main.isPaused == false)
        let other = stats[1]
        #expect(other.counts[.ready] == 1)
        #expect(other.oldestDue != nil)
        #expect(other.isPaused)
        #expect(other.concurrencyLimit == 2)
        await #expect {
            try await production.setConcurrencyLimit(0, queue: "other")
        } throws: { ($0 as? ActionError)?.code == .invalidArgument }
    }

    @Test func pausedQueuesAndConcurrencyLimitsHoldAcrossClaims() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        try await production.enqueue((0..<5).map { try NewAction("Greet", Greeting(name: "\($0)")) })
        func claim(_ owner: String) async throws -> Int {
            try await production.store.claim(
                queue: "default", owner: owner, limit: 10, leaseUntil: nowMilliseconds() + 60_000,
                defaultMaxAttempts: 3
            ).count
        }
        try await production.pause(queue: "default")
        #expect(try await claim("A") == 0)
        try await production.resume(queue: "default")
        try await production.setConcurrencyLimit(2, queue: "default")
        #expect(try await claim("A") == 2)
        // The limit counts every owner's live leases.
        #expect(try await claim("B") == 0)
        try await production.setConcurrencyLimit(nil, queue: "default")
        #expect(try await claim("B") == 3)
    }
}
