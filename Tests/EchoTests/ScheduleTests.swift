import Foundation
import Testing

@testable import Echo

@Suite struct ScheduleTests {
    @Test func cronExpressionsFindTheirNextMinute() throws {
        let formatter = ISO8601DateFormatter()
        func date(_ text: String) throws -> Date { try #require(formatter.date(from: text)) }
        let everyFifteen = try CronExpression("*/15 * * * *")
        #expect(everyFifteen.next(after: try date("2026-01-01T10:07:30Z")) == (try date("2026-01-01T10:15:00Z")))
        let nightly = try CronExpression("30 2 * * *")
        #expect(nightly.next(after: try date("2026-01-01T10:07:00Z")) == (try date("2026-01-02T02:30:00Z")))
        // 2026-01-05 is a Monday.
        let mondays = try CronExpression("0 9 * * 1")
        #expect(mondays.next(after: try date("2026-01-01T00:00:00Z")) == (try date("2026-01-05T09:00:00Z")))
        let firstOfMonth = try CronExpression("0 0 1 1-12/3 *")
        #expect(firstOfMonth.next(after: try date("2026-01-01T00:00:00Z")) == (try date("2026-04-01T00:00:00Z")))
        for bad in ["* * * *", "61 * * * *", "*/0 * * * *", "a * * * *", "5-1 * * * *"] {
            #expect(throws: ActionError.self) { try CronExpression(bad) }
        }
    }

    @Test func eachTickIsEnqueuedOnceAcrossSchedulers() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let other = try await Production.open(path: directory.path())
        let schedule = Schedule(
            "report", cadence: try .every(.seconds(60)), action: try NewAction("Report", Greeting(name: "r")))
        let first = try Scheduler(production: production, schedules: [schedule])
        let second = try Scheduler(production: other, schedules: [schedule])
        // Timeline (ms): first sight at 1_000 registers the schedule; the tick at 60_000 is due at
        // 60_500 and both schedulers (two connections, as two processes would) see it.
        await first.tick(now: 1_000)
        await second.tick(now: 1_000)
        #expect(try await production.list().isEmpty)
        await first.tick(now: 60_500)
        await second.tick(now: 60_500)
        await second.tick(now: 61_000)
        let actions = try await production.list()
        #expect(actions.count == 1)
        #expect(actions.first?.idempotencyKey == "echo.schedule/report/60000")
        #expect(actions.first?.name == "Report")
    }

    @Test func catchUpPolicyDecidesWhichMissedTicksRun() async throws {
        for (policy, expected) in [
            (Schedule.CatchUp.latest, [600_000 as Int64]), (.skip, []), (.all(limit: 3), [480_000, 540_000, 600_000]),
        ] {
            let directory = try TemporaryDirectory()
            let production = try await Production.open(path: directory.path())
            let schedule = Schedule(
                "tick", cadence: try .every(.seconds(60)), action: try NewAction("Tick", Greeting(name: "t")),
                catchUp: policy)
            let scheduler = try Scheduler(production: production, schedules: [schedule])
            await scheduler.tick(now: 0)
            // Down from 0 to 610 s: ten ticks missed, none on time.
            await scheduler.tick(now: 610_000)
            let keys = try await production.list().compactMap(\.idempotencyKey)
            #expect(keys == expected.map { "echo.schedule/tick/\($0)" }, "policy \(policy)")
            // The next run sees no tick again.
            await scheduler.tick(now: 615_000)
            #expect(try await production.list().count == expected.count)
        }
    }
}
