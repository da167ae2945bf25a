import Echo
import Foundation
import Testing

/// Item 6: a failed attempt is the same row, due again at now + backoff, its error recorded;
/// past its attempts it is a dead letter with the whole history. Snoozing is not a failure.
@Suite struct RetryTests {
    @Test func aFailureBecomesATimestampedRetryRow() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let failedAt = Tally()
        let plan = Plan().signature("Flaky") { (_: Empty, context: ActionContext) -> Empty in
            failedAt.add("\(nowMilliseconds())")
            throw TestFailure(text: "disk on fire (attempt \(context.attempt))")
        }
        // A long backoff (2 s ± 50 %) so the row can be inspected before it runs again.
        let backoff = Backoff(base: .seconds(2), factor: 2, cap: .seconds(60), jitter: 0.5)
        let id = try await production.enqueue("Flaky", Empty(), options: ActionOptions(maxAttempts: 3))
        let sequencer = Sequencer(
            production: production, plan: plan, configuration: testConfiguration(backoff: backoff))
        try await withRunning(sequencer) {
            try await expectEventually {
                let record = try await production.action(id)
                return record?.state == .ready && record?.attempt == 1
            }
        }
        let observed = nowMilliseconds()
        let record = try #require(try await production.action(id))
        let thrownAt = try #require(failedAt.log.first.flatMap { Int64($0) })
        #expect(failedAt.log.count == 1)
        #expect(record.state == .ready)
        #expect(record.attempt == 1)
        #expect(record.owner == nil)
        // run_at = time of failure + backoff, within the jitter's bounds.
        let runAt = record.runAt.epochMilliseconds
        #expect(runAt >= thrownAt + 1_000)
        #expect(runAt <= observed + 3_000)
        #expect(record.errors.count == 1)
        #expect(record.errors[0].attempt == 1)
        #expect(record.errors[0].message.contains("disk on fire (attempt 1)"))
        #expect(record.errors[0].at >= thrownAt && record.errors[0].at <= observed)
        let lastError = try SQLiteFile(path: directory.path()).text(
            "SELECT last_error FROM echo_actions WHERE id = \(id)")
        #expect(lastError?.contains("disk on fire (attempt 1)") == true)
        #expect(try await production.karma(id) == nil)
    }

    @Test func pastMaxAttemptsItIsDeadWithTheFullHistory() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let runs = Tally()
        let plan = Plan().signature("Doomed") { (_: Empty, context: ActionContext) -> Empty in
            runs.add("run")
            throw TestFailure(text: "failure number \(context.attempt)")
        }
        let id = try await production.enqueue("Doomed", Empty(), options: ActionOptions(maxAttempts: 3))
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, id) }
        #expect(runs.count("run") == 3)
        #expect(karma.outcome == .deadLettered)
        #expect(karma.attempts == 3)
        #expect(karma.result == nil)
        #expect(karma.errors.map(\.attempt) == [1, 2, 3])
        for (index, error) in karma.errors.enumerated() {
            #expect(error.message.contains("failure number \(index + 1)"))
        }
        let record = try #require(try await production.action(id))
        #expect(record.state == .dead)
        #expect(record.errors == karma.errors)
        #expect(record.finishedAt != nil)
        #expect(try await production.deadLetters().map(\.id) == [id])
        // The error times increase with the backoff between them.
        #expect(zip(karma.errors, karma.errors.dropFirst()).allSatisfy { $0.at < $1.at })
    }

    @Test func aRetriedActionCanSucceed() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan().signature("ThirdTime") { (input: Number, context: ActionContext) -> Number in
            if context.attempt < 3 { throw TestFailure(text: "not yet \(context.attempt)") }
            return Number(value: input.value * 2)
        }
        let id = try await production.enqueue("ThirdTime", Number(value: 21))
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, id) }
        #expect(karma.outcome == .succeeded)
        #expect(karma.attempts == 3)
        #expect(karma.errors.map(\.message).map { $0.contains("not yet") } == [true, true])
        #expect(try karma.decodeResult(as: Number.self) == Number(value: 42))
        #expect(try await production.action(id)?.state == .done)
    }

    @Test func snoozeDoesNotCountAnAttempt() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let runs = Tally()
        let plan = Plan().signature("Sleepy") { (_: Empty, context: ActionContext) -> Number in
            let run = runs.add("run")
            #expect(context.attempt == 1)
            if run <= 3 { throw Snooze(for: .milliseconds(20)) }
            return Number(value: run)
        }
        // One attempt allowed, snoozed three times: it still succeeds.
        let id = try await production.enqueue("Sleepy", Empty(), options: ActionOptions(maxAttempts: 1))
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, id) }
        #expect(runs.count("run") == 4)
        #expect(karma.outcome == .succeeded)
        #expect(karma.attempts == 1)
        #expect(karma.errors.isEmpty)
        #expect(try karma.decodeResult(as: Number.self) == Number(value: 4))
    }

    @Test func snoozedRowIsReadyAtItsDelayWithTheAttemptUncounted() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan().signature("Later") { (_: Empty, _: ActionContext) -> Empty in
            throw Snooze(for: .seconds(60))
        }
        let id = try await production.enqueue("Later", Empty())
        let before = nowMilliseconds()
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        try await withRunning(sequencer) {
            try await expectEventually {
                let record = try await production.action(id)
                return record?.state == .ready && record?.startedAt != nil
            }
        }
        let record = try #require(try await production.action(id))
        #expect(record.attempt == 0)
        #expect(record.errors.isEmpty)
        #expect(record.runAt.epochMilliseconds >= before + 60_000)
        #expect(record.runAt.epochMilliseconds <= nowMilliseconds() + 60_000)
    }

    @Test func planPolicySetsAttemptsAndBackoff() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let runs = Tally()
        let policy = Plan.Policy(maxAttempts: 2, backoff: Backoff(base: .milliseconds(10), jitter: 0))
        let plan = Plan().signature("Twice", policy: policy) { (_: Empty, _: ActionContext) -> Empty in
            runs.add("run")
            throw TestFailure(text: "no")
        }
        let id = try await production.enqueue("Twice", Empty())
        // The Sequencer's own backoff is an hour: only the policy's makes the retry quick.
        let sequencer = Sequencer(
            production: production, plan: plan,
            configuration: testConfiguration(backoff: Backoff(base: .seconds(3_600), jitter: 0)))
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, id) }
        #expect(karma.outcome == .deadLettered)
        #expect(karma.attempts == 2)
        #expect(runs.count("run") == 2)

        // The action's own maxAttempts wins over the policy's.
        let own = try await production.enqueue("Twice", Empty(), options: ActionOptions(maxAttempts: 1))
        let karma1 = try await withRunning(sequencer) { try await waitForKarma(production, own) }
        #expect(karma1.attempts == 1)
        #expect(karma1.outcome == .deadLettered)
    }

    @Test func backoffGrowsExponentiallyWithinItsJitterAndCap() {
        let exact = Backoff(base: .milliseconds(100), factor: 2, cap: .seconds(1), jitter: 0)
        #expect(exact.delay(afterAttempt: 1) == .milliseconds(100))
        #expect(exact.delay(afterAttempt: 2) == .milliseconds(200))
        #expect(exact.delay(afterAttempt: 3) == .milliseconds(400))
        #expect(exact.delay(afterAttempt: 4) == .milliseconds(800))
        #expect(exact.delay(afterAttempt: 5) == .seconds(1))
        #expect(exact.delay(afterAttempt: 50) == .seconds(1))

        let jittered = Backoff(base: .seconds(1), factor: 3, cap: .seconds(3_600), jitter: 0.25)
        var seen = Set<Duration>()
        for _ in 0..<500 {
            let delay = jittered.delay(afterAttempt: 2)
            #expect(delay >= .milliseconds(2_250) && delay <= .milliseconds(3_750))
            seen.insert(delay)
        }
        #expect(seen.count > 1)
    }
}
