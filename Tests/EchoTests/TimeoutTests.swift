import Echo
import Foundation
import Testing

/// Item 17: an attempt running past its timeout is cancelled and counts as a failure.
@Suite struct TimeoutTests {
    @Test func anActionTimeoutCancelsAndRetries() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let cancelled = Tally()
        let plan = Plan().signature("Hang") { (input: Number, context: ActionContext) -> Number in
            if context.attempt == 1 {
                do {
                    try await Task.sleep(for: .seconds(60))
                } catch {
                    cancelled.add("attempt 1")
                    throw error
                }
            }
            return input
        }
        let id = try await production.enqueue(
            "Hang", Number(value: 3), options: ActionOptions(timeout: .milliseconds(150)))
        #expect(try SQLiteFile(path: directory.path()).int("SELECT timeout_ms FROM echo_actions") == 150)
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, id) }
        #expect(karma.outcome == .succeeded)
        #expect(karma.attempts == 2)
        #expect(karma.errors.count == 1)
        #expect(karma.errors.first?.message.contains("timeout") == true)
        // The function's task was cancelled, not left sleeping.
        try await expectEventually { cancelled.count("attempt 1") == 1 }
    }

    @Test func aPolicyTimeoutAppliesToFunctionsThatIgnoreCancellation() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let never = Gate()
        defer { never.open() }
        let plan = Plan().signature(
            "Stuck", policy: Plan.Policy(maxAttempts: 2, timeout: .milliseconds(100))
        ) { (_: Empty, _: ActionContext) -> Empty in
            try await never.wait(ignoringCancellation: true)
            return Empty()
        }
        let id = try await production.enqueue("Stuck", Empty())
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, id) }
        #expect(karma.outcome == .deadLettered)
        #expect(karma.attempts == 2)
        #expect(karma.errors.map(\.attempt) == [1, 2])
        #expect(karma.errors.allSatisfy { $0.message.contains("timeout") })
    }

    @Test func theActionsTimeoutWinsOverTheSequencerDefault() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan().signature("Nap") { (input: Number, _: ActionContext) -> Number in
            try await Task.sleep(for: .milliseconds(300))
            return input
        }
        // The Sequencer's default of 50 ms would time the nap out; the action allows 30 s.
        let patient = try await production.enqueue(
            "Nap", Number(value: 1), options: ActionOptions(timeout: .seconds(30)))
        let hasty = try await production.enqueue("Nap", Number(value: 2), options: ActionOptions(maxAttempts: 1))
        let sequencer = Sequencer(
            production: production, plan: plan, configuration: testConfiguration(defaultTimeout: .milliseconds(50)))
        try await withRunning(sequencer) {
            #expect(try await waitForKarma(production, patient).outcome == .succeeded)
            let timedOut = try await waitForKarma(production, hasty)
            #expect(timedOut.outcome == .deadLettered)
            #expect(timedOut.errors.first?.message.contains("timeout") == true)
        }
    }
}
