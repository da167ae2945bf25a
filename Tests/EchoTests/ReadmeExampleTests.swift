import Echo

struct ReadInput: Codable, Sendable { var path: String }
struct ReadOutput: Codable, Sendable { var length: Int }

func example(path: String) async throws -> KarmaRecord? {
    // Creates (or migrates) the database file.
    let production = try await Production.open(path: path)

    // The Plan: typed, Codable functions by name.
    let plan = Plan()
        .signature("Read") { (input: ReadInput, context: ActionContext) in
            ReadOutput(length: input.path.count)
        }

    // On disk when this returns.
    let id = try await production.enqueue("Read", ReadInput(path: "a.txt"))

    // Run until shut down (here: until the action has finished).
    let sequencer = Sequencer(production: production, plan: plan)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await sequencer.run() }
        while try await production.karma(id) == nil { try await Task.sleep(for: .milliseconds(10)) }
        sequencer.shutdown()
        try await group.waitForAll()
    }
    return try await production.karma(id)  // outcome, result, attempts, errors, times
}

// The test that runs the example above (the code above is copied verbatim from README.md).

// swift-format-ignore: OrderedImports
import Foundation

// swift-format-ignore: OrderedImports
import Testing

@Suite struct ReadmeExampleTests {
    @Test func theReadmeExampleRunsAndSucceeds() async throws {
        let directory = try TemporaryDirectory()
        let karma = try #require(try await example(path: directory.path("readme.sqlite")))
        #expect(karma.outcome == .succeeded)
        #expect(karma.name == "Read")
        #expect(karma.attempts == 1)
        #expect(try karma.decodeResult(as: ReadOutput.self).length == "a.txt".count)
    }

    @Test func theExampleInTheReadmeIsThisFile() throws {
        // Keeps this file and the README in step: the README's example is this file's opening.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let source = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        let section = try #require(readme.range(of: "## Example"))
        let start = try #require(readme.range(of: "```swift\n", range: section.upperBound..<readme.endIndex))
        let end = try #require(readme.range(of: "```", range: start.upperBound..<readme.endIndex))
        let example = String(readme[start.upperBound..<end.lowerBound])
        #expect(source.hasPrefix(example))
    }
}
