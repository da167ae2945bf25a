import Foundation

/// A periodic action: a template enqueued once per tick of a cadence.
///
/// Every process running a ``Scheduler`` with the same schedule on one database file may see the
/// same tick; each tick's action carries the idempotency key `echo.schedule/NAME/TICK`, so it is
/// enqueued once whatever the number of processes.
public struct Schedule: Sendable {
    /// When ticks fall.
    public struct Cadence: Sendable, Hashable {
        enum Kind: Sendable, Hashable {
            case every(Int64)
            case cron(CronExpression)
        }
        let kind: Kind

        /// A tick every `interval`, aligned to multiples of it since 1970 (so every process agrees).
        ///
        /// - Throws: ``ActionError/Code/invalidArgument`` for an interval under one millisecond.
        public static func every(_ interval: Duration) throws -> Cadence {
            let milliseconds = Clock.milliseconds(interval)
            guard milliseconds >= 1 else {
                throw ActionError(.invalidArgument, "a schedule's interval must be at least 1 ms")
            }
            return Cadence(kind: .every(milliseconds))
        }

        /// A tick at each time a cron expression matches (UTC).
        public static func cron(_ expression: CronExpression) -> Cadence {
            Cadence(kind: .cron(expression))
        }

        /// Where to start looking for missed ticks so that at least `ticks` of them are found
        /// without walking through a long downtime tick by tick (cron: at most 7 days back).
        func lookBackStart(now: Int64, ticks: Int) -> Int64 {
            switch kind {
            case .every(let interval): now - interval * Int64(ticks + 1)
            case .cron: now - 7 * 86_400_000
            }
        }

        /// The first tick after `milliseconds` (since 1970).
        func next(after milliseconds: Int64) -> Int64? {
            switch kind {
            case .every(let interval):
                return (milliseconds / interval + 1) * interval
            case .cron(let expression):
                return expression.next(after: Date(milliseconds: milliseconds))?.milliseconds
            }
        }
    }

    /// What happens to ticks that passed while no Scheduler ran.
    public struct CatchUp: Sendable, Hashable {
        let limit: Int
        /// Enqueue only the latest missed tick. The default.
        public static let latest = CatchUp(limit: 1)
        /// Enqueue no missed tick; wait for the next one.
        public static let skip = CatchUp(limit: 0)
        /// Enqueue every missed tick, the latest `limit` at most.
        public static func all(limit: Int) -> CatchUp { CatchUp(limit: max(0, limit)) }
    }

    /// The schedule's name, unique in the database.
    public var name: String
    /// When it ticks.
    public var cadence: Cadence
    /// The action enqueued per tick (its idempotency key is replaced by the tick's).
    public var action: NewAction
    /// What to do with ticks missed during downtime. The default is ``CatchUp/latest``.
    public var catchUp: CatchUp

    /// Creates a schedule.
    public init(_ name: String, cadence: Cadence, action: NewAction, catchUp: CatchUp = .latest) {
        self.name = name
        self.cadence = cadence
        self.action = action
        self.catchUp = catchUp
    }

    /// The action for the tick at `tick` (milliseconds since 1970).
    func action(forTick tick: Int64) -> NewAction {
        var action = self.action
        action.options.idempotencyKey = "echo.schedule/\(name)/\(tick)"
        action.options.metadata["echo.tick"] = .number(Double(tick))
        if action.options.runAt == nil && action.options.delay == nil {
            action.options.runAt = Date(milliseconds: tick)
        }
        return action
    }
}
