public import Foundation

/// A five-field cron expression — minute, hour, day of month, month, day of week — read in UTC.
///
/// Each field takes `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, or a comma-separated
/// list of these. Day of week runs 0–6 from Sunday (7 is Sunday too). As in classic cron, when
/// both day fields are restricted, a day matching either runs.
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    let minutes: Set<Int>
    let hours: Set<Int>
    let daysOfMonth: Set<Int>
    let months: Set<Int>
    let daysOfWeek: Set<Int>
    let dayOfMonthRestricted: Bool
    let dayOfWeekRestricted: Bool

    /// The expression as given.
    public let description: String

    /// Parses an expression.
    ///
    /// - Throws: ``ActionError/Code/invalidArgument`` naming the field that does not parse.
    public init(_ text: String) throws {
        let fields = text.split(whereSeparator: \.isWhitespace).map(String.init)
        guard fields.count == 5 else {
            throw ActionError(.invalidArgument, "a cron expression has 5 fields, not \(fields.count): \(text)")
        }
        minutes = try CronExpression.parse(fields[0], name: "minute", range: 0...59)
        hours = try CronExpression.parse(fields[1], name: "hour", range: 0...23)
        daysOfMonth = try CronExpression.parse(fields[2], name: "day of month", range: 1...31)
        months = try CronExpression.parse(fields[3], name: "month", range: 1...12)
        let weekdays = try CronExpression.parse(fields[4], name: "day of week", range: 0...7)
        daysOfWeek = Set(weekdays.map { $0 == 7 ? 0 : $0 })
        dayOfMonthRestricted = fields[2] != "*"
        dayOfWeekRestricted = fields[4] != "*"
        description = text
    }

    private static func parse(_ field: String, name: String, range: ClosedRange<Int>) throws -> Set<Int> {
        var values = Set<Int>()
        for part in field.split(separator: ",", omittingEmptySubsequences: false) {
            let pieces = part.split(separator: "/", omittingEmptySubsequences: false)
            guard pieces.count <= 2, let spanText = pieces.first, !spanText.isEmpty else {
                throw ActionError(.invalidArgument, "cannot read the \(name) field \(field)")
            }
            var step = 1
            if pieces.count == 2 {
                guard let parsed = Int(pieces[1]), parsed > 0 else {
                    throw ActionError(.invalidArgument, "bad step in the \(name) field \(field)")
                }
                step = parsed
            }
            var low = range.lowerBound
            var high = range.upperBound
            if spanText != "*" {
                let bounds = spanText.split(separator: "-", omittingEmptySubsequences: false)
                guard bounds.count <= 2, let first = Int(bounds[0]) else {
                    throw ActionError(.invalidArgument, "cannot read the \(name) field \(field)")
                }
                low = first
                high = first
                if bounds.count == 2 {
                    guard let last = Int(bounds[1]) else {
                        throw ActionError(.invalidArgument, "cannot read the \(name) field \(field)")
                    }
                    high = last
                } else if pieces.count == 2 {
                    high = range.upperBound
                }
            }
            guard range.contains(low), range.contains(high), low <= high else {
                throw ActionError(.invalidArgument, "the \(name) field \(field) is outside \(range)")
            }
            values.formUnion(stride(from: low, through: high, by: step))
        }
        return values
    }

    /// The first time after `date` (to the minute) that the expression matches, within four years.
    public func next(after date: Date) -> Date? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let start = floor(date.timeIntervalSince1970 / 60) * 60 + 60
        var candidate = Date(timeIntervalSince1970: start)
        let limit = date.addingTimeInterval(4 * 366 * 86_400)
        while candidate < limit {
            let parts = calendar.dateComponents([.minute, .hour, .day, .month, .weekday], from: candidate)
            guard let minute = parts.minute, let hour = parts.hour, let day = parts.day, let month = parts.month,
                let weekday = parts.weekday
            else { return nil }
            if !months.contains(month) || !dayMatches(day: day, weekday: weekday - 1) {
                // Skip to the next day's midnight.
                let midnight = calendar.startOfDay(for: candidate)
                candidate = midnight.addingTimeInterval(86_400)
                continue
            }
            if !hours.contains(hour) {
                candidate = candidate.addingTimeInterval(Double(60 - minute) * 60)
                continue
            }
            if minutes.contains(minute) { return candidate }
            candidate = candidate.addingTimeInterval(60)
        }
        return nil
    }

    private func dayMatches(day: Int, weekday: Int) -> Bool {
        switch (dayOfMonthRestricted, dayOfWeekRestricted) {
        case (true, true): daysOfMonth.contains(day) || daysOfWeek.contains(weekday)
        case (true, false): daysOfMonth.contains(day)
        case (false, true): daysOfWeek.contains(weekday)
        case (false, false): true
        }
    }
}
