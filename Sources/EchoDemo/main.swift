// echo-demo: the main job of Echo on an embedded default database file.
//
// Enqueues a few actions (one chained, one that fails twice before it succeeds, one with an
// unknown name), runs a Sequencer until they have all finished, and prints their Karma.
//
//     swift run echo-demo [--path echo-demo.sqlite]
import Echo
import Foundation
import Logging

struct Order: Codable, Sendable {
    var id: Int
    var amount: Int
}

struct Receipt: Codable, Sendable {
    var order: Int
    var text: String
}

var path = "echo-demo.sqlite"
if let index = CommandLine.arguments.firstIndex(of: "--path"), index + 1 < CommandLine.arguments.count {
    path = CommandLine.arguments[index + 1]
}

var logger = Logger(label: "echo-demo")
logger.logLevel = .notice

let production = try await Production.open(path: path, logger: logger)
let flaky = Signal(0)
let plan = Plan()
    .signature("Charge") { (order: Order, context: ActionContext) in
        Receipt(order: order.id, text: "charged \(order.amount) on attempt \(context.attempt)")
    }
    .signature("Email") { (receipt: Receipt, _: ActionContext) in
        "mailed receipt for order \(receipt.order)"
    }
    .signature(
        "Flaky", policy: Plan.Policy(maxAttempts: 5, backoff: Backoff(base: .milliseconds(50)))
    ) { (order: Order, context: ActionContext) in
        let failures = flaky.withValue { count -> Int in
            count += 1
            return count
        }
        if failures <= 2 { throw DemoError(message: "transient failure \(failures)") }
        return "order \(order.id) went through on attempt \(context.attempt)"
    }

struct DemoError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

var ids: [ActionID] = []
ids.append(
    try await production.enqueue(
        NewAction("Charge", Order(id: 1, amount: 42), next: try NewAction("Email", Receipt(order: 1, text: "")))))
ids.append(try await production.enqueue("Flaky", Order(id: 2, amount: 7)))
ids.append(try await production.enqueue("Refund", Order(id: 3, amount: 1)))
ids += try await production.enqueue((10..<20).map { try NewAction("Charge", Order(id: $0, amount: $0)) })
print("enqueued \(ids.count) actions into \(path)")

let sequencer = Sequencer(
    production: production, plan: plan,
    configuration: Sequencer.Configuration(concurrency: 8, minimumPollInterval: .milliseconds(5)))
try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await sequencer.run() }
    let deadline = ContinuousClock.now.advanced(by: .seconds(30))
    while ContinuousClock.now < deadline {
        var finished = 0
        for id in ids where try await production.karma(id) != nil { finished += 1 }
        if finished == ids.count { break }
        try await Task.sleep(for: .milliseconds(20))
    }
    sequencer.shutdown()
    try await group.waitForAll()
}

for id in ids {
    guard let karma = try await production.karma(id) else {
        print("#\(id) did not finish")
        continue
    }
    let result = karma.result.map { String(decoding: $0, as: UTF8.self) } ?? "-"
    let lastError = karma.errors.last?.message ?? ""
    print("#\(id) \(karma.name) \(karma.outcome) after \(karma.attempts) attempt(s): \(result) \(lastError)")
}
for stats in try await production.stats() {
    let counts = stats.counts.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key)=\($0.value)" }
    print("queue \(stats.queue): \(counts.joined(separator: " "))")
}
