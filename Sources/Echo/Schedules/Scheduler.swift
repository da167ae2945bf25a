import Foundation
public import Logging
public import ServiceLifecycle

/// Enqueues the actions of periodic ``Schedule``s, once per tick across every process on the
/// database file. A `Service`: run it in a `ServiceGroup` beside the Sequencers.
public final class Scheduler: Service, Sendable {
    /// The production ticks are enqueued into.
    public let production: Production
    /// The schedules.
    public let schedules: [Schedule]
    let logger: Logger

    /// Creates a scheduler.
    ///
    /// - Parameters:
    ///   - production: Where the ticks' actions go.
    ///   - schedules: The schedules; names must be unique.
    ///   - logger: Where ticks and failures are logged.
    /// - Throws: ``ActionError/Code/invalidArgument`` when two schedules share a name.
    public init(production: Production, schedules: [Schedule], logger: Logger? = nil) throws {
        guard Set(schedules.map(\.name)).count == schedules.count else {
            throw ActionError(.invalidArgument, "schedule names must be unique")
        }
        self.production = production
        self.schedules = schedules
        self.logger = logger ?? production.logger
    }

    /// Enqueues due ticks until graceful shutdown or cancellation.
    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let next = await self.tick(now: Clock.milliseconds())
                let wait = max(1, min((next ?? Int64.max) - Clock.milliseconds(), 60_000))
                try await Task.sleep(for: .milliseconds(wait))
            }
        }
    }

    /// Enqueues every due tick of every schedule; returns when the next tick falls.
    @discardableResult
    func tick(now: Int64) async -> Int64? {
        var earliest: Int64?
        for schedule in schedules {
            do {
                let next = try await tick(schedule, now: now)
                if let next { earliest = min(earliest ?? next, next) }
            } catch {
                logger.error("schedule tick failed", metadata: ["schedule": "\(schedule.name)", "error": "\(error)"])
                earliest = min(earliest ?? now + 1_000, now + 1_000)
            }
        }
        return earliest
    }

    /// One schedule: in one transaction, read its last tick, enqueue the due ticks (per the
    /// catch-up policy) and move the last tick forward. Returns the next tick's time.
    private func tick(_ schedule: Schedule, now: Int64) async throws -> Int64? {
        let logger = self.logger
        return try await production.transaction { tx in
            let rows = try tx.query("SELECT last_tick FROM echo_schedules WHERE name = ?1", [.text(schedule.name)])
            guard case .integer(let last)? = rows.first?.first else {
                // First sight: start from now; the first tick is the next one.
                try tx.execute(
                    "INSERT INTO echo_schedules (name, last_tick) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                    [.text(schedule.name), .integer(now)])
                return schedule.cadence.next(after: now)
            }
            // Ticks within the grace window are on time; older ones were missed while no
            // Scheduler ran, and the catch-up policy decides which of those to enqueue.
            let grace: Int64 = 5_000
            let keep = max(1, schedule.catchUp.limit)
            var cursor = max(last, schedule.cadence.lookBackStart(now: now, ticks: keep + 1))
            var onTime: [Int64] = []
            var missed: [Int64] = []
            while let tick = schedule.cadence.next(after: cursor), tick <= now {
                if now - tick <= grace {
                    onTime.append(tick)
                } else {
                    missed.append(tick)
                    if missed.count > keep { missed.removeFirst() }
                }
                cursor = tick
            }
            var enqueue = Array(missed.suffix(schedule.catchUp.limit))
            if schedule.catchUp == .latest && !onTime.isEmpty { enqueue = [] }
            enqueue += onTime
            for tick in enqueue { try tx.enqueue(schedule.action(forTick: tick)) }
            if !enqueue.isEmpty || !missed.isEmpty {
                logger.debug(
                    "schedule ticked",
                    metadata: [
                        "schedule": "\(schedule.name)", "enqueued": "\(enqueue.count)", "missed": "\(missed.count)",
                    ])
            }
            if cursor > last {
                try tx.execute(
                    "UPDATE echo_schedules SET last_tick = max(last_tick, ?2) WHERE name = ?1",
                    [.text(schedule.name), .integer(cursor)])
            }
            return schedule.cadence.next(after: max(cursor, now))
        }
    }
}
