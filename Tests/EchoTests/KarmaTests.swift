import Echo
import Foundation
import Testing

/// Item 7: Karma records each finished action's outcome, result, attempts, errors and times,
/// committed with the outcome.
@Suite struct KarmaTests {
    @Test func successRecordsResultAttemptsAndTimes() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan().signature("Double") { (input: Number, context: ActionContext) -> Number in
            if context.attempt == 1 { throw TestFailure(text: "first try fails") }
            return Number(value: input.value * 2)
        }
        let id = try await production.enqueue("Double", Number(value: 8), options: ActionOptions(queue: "math"))
        let sequencer = Sequencer(
            production: production, plan: plan, configuration: testConfiguration(queues: ["math"]))
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, id) }

        #expect(karma.actionID == id)
        #expect(karma.queue == "math")
        #expect(karma.name == "Double")
        #expect(karma.outcome == .succeeded)
        #expect(karma.outcome.description == "succeeded")
        #expect(try karma.decodeResult(as: Number.self) == Number(value: 16))
        #expect(karma.attempts == 2)
        #expect(karma.errors.count == 1)
        #expect(karma.errors.first?.attempt == 1)
        #expect(karma.errors.first?.message.contains("first try fails") == true)

        let record = try #require(try await production.action(id))
        let startedAt = try #require(karma.startedAt)
        #expect(karma.enqueuedAt == record.createdAt)
        #expect(startedAt == record.startedAt)
        #expect(karma.finishedAt == record.finishedAt)
        #expect(karma.enqueuedAt <= startedAt)
        #expect(startedAt <= karma.finishedAt)
        #expect(record.errors == karma.errors)

        // The same record through the ledger handed to actions.
        #expect(try await production.ledger.record(for: id) == karma)
        // The stored columns match.
        let raw = try SQLiteFile(path: directory.path())
        let row = try #require(
            try raw.rows(
                "SELECT outcome, attempts, CAST(result AS TEXT), finished_at FROM echo_karma WHERE action_id = \(id)"
            ).first)
        #expect(row[0] == "2")
        #expect(row[1] == "2")
        #expect(row[2] == #"{"value":16}"#)
        #expect(row[3].flatMap { Int64($0) } == karma.finishedAt.epochMilliseconds)
    }

    @Test func noKarmaUntilFinishedAndNoneForUnknownIDs() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let id = try await production.enqueue("Double", Number(value: 1))
        #expect(try await production.karma(id) == nil)
        #expect(try await production.karma(ActionID(9_999)) == nil)
    }

    @Test func actionsCanReadEarlierKarmaThroughTheirContext() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan()
            .signature("Produce") { (input: Number, _: ActionContext) in input }
            .signature("Consume") { (input: Number, context: ActionContext) -> Number in
                let earlier = try await context.karma.record(for: ActionID(Int64(input.value)))
                return try earlier?.decodeResult(as: Number.self) ?? Number(value: -1)
            }
        let produced = try await production.enqueue("Produce", Number(value: 77))
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let karma = try await withRunning(sequencer) {
            _ = try await waitForKarma(production, produced)
            let consumer = try await production.enqueue("Consume", Number(value: Int(produced.rawValue)))
            return try await waitForKarma(production, consumer)
        }
        #expect(try karma.decodeResult(as: Number.self) == Number(value: 77))
    }

    @Test func deadLetterKarmaHasNoResult() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan().signature("Fail") { (_: Empty, _: ActionContext) -> Empty in
            throw TestFailure(text: "always")
        }
        let id = try await production.enqueue("Fail", Empty(), options: ActionOptions(maxAttempts: 2))
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, id) }
        #expect(karma.outcome == .deadLettered)
        #expect(karma.outcome.description == "dead")
        #expect(karma.result == nil)
        #expect(karma.attempts == 2)
        #expect(karma.errors.count == 2)
        #expect(throws: ActionError.self) { try karma.decodeResult(as: Empty.self) }
    }
}
