#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// How long a failed action waits before its next attempt: exponential, capped, jittered.
///
/// The delay after attempt `n` is `min(cap, base × factor^(n−1))`, then moved by a random
/// fraction of up to ±`jitter` so that actions failing together do not retry together.
public struct Backoff: Sendable, Hashable {
    /// The delay after the first failed attempt. The default is 1 second.
    public var base: Duration
    /// The growth per attempt. The default is 2.
    public var factor: Double
    /// The longest delay. The default is 1 hour.
    public var cap: Duration
    /// The random spread, as a fraction of the delay (0 to 1). The default is 0.1.
    public var jitter: Double

    /// Creates a backoff; every parameter has the default described on its property.
    public init(base: Duration = .seconds(1), factor: Double = 2, cap: Duration = .seconds(3_600), jitter: Double = 0.1)
    {
        self.base = base
        self.factor = max(1, factor)
        self.cap = cap
        self.jitter = min(1, max(0, jitter))
    }

    /// The delay after failed attempt `attempt` (1 for the first), jitter included.
    public func delay(afterAttempt attempt: Int) -> Duration {
        let baseMilliseconds = Double(Clock.milliseconds(base))
        let capMilliseconds = Double(Clock.milliseconds(cap))
        let exponent = Double(max(0, attempt - 1))
        let raw = min(capMilliseconds, baseMilliseconds * pow(factor, exponent))
        let spread = jitter > 0 ? Double.random(in: -jitter...jitter) : 0
        let milliseconds = max(0, min(capMilliseconds, raw * (1 + spread)))
        return .milliseconds(Int64(milliseconds.rounded()))
    }
}
