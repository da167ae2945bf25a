#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Wall-clock time in milliseconds since 1970, the unit of every time column.
enum Clock {
    static func milliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// The largest magnitude of a stored time or delay: far beyond any date, and small enough that
    /// adding the current time to it cannot overflow.
    static let limit: Int64 = Int64.max / 4

    /// `duration` in milliseconds, clamped to ±``limit`` (so `.seconds(.max)` cannot trap).
    static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000)
        if overflow || whole > limit || whole < -limit { return seconds < 0 ? -limit : limit }
        return whole + attoseconds / 1_000_000_000_000_000
    }
}
