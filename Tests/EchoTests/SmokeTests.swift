import Echo
import Foundation
import Testing

@Suite struct SmokeTests {
    @Test func enqueueRunAndRecordKarma() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan().signature("Greet") { (input: Greeting, _) in Reply(text: "hello \(input.name)") }
        let id = try await production.enqueue("Greet", Greeting(name: "echo"))
        let stored = try #require(try await production.action(id))
        #expect(stored.state == .ready)
        let sequencer = Sequencer(production: production, plan: plan)
        try await withRunning(sequencer) {
            let finished = try await eventually { try await production.karma(id) != nil }
            #expect(finished)
        }
        let karma = try #require(try await production.karma(id))
        #expect(karma.outcome == .succeeded)
        #expect(karma.attempts == 1)
        #expect(try karma.decodeResult(as: Reply.self) == Reply(text: "hello echo"))
        #expect(try await production.action(id)?.state == .done)
    }
}
