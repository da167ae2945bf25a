/// How long finished actions and their Karma are kept. A ``Sequencer`` applies it periodically, so
/// the database file does not grow without bound; dead letters are kept until deleted.
public struct Retention: Sendable, Hashable {
    /// Done and cancelled actions that finished longer ago than this are deleted with their Karma.
    /// The default is 7 days; `nil` keeps them whatever their age.
    public var maximumAge: Duration?
    /// At most this many done and cancelled actions are kept (the newest). The default, `nil`,
    /// sets no count limit.
    public var maximumCount: Int?
    /// How often the Sequencer prunes. The default is 5 minutes.
    public var interval: Duration

    /// Creates a retention policy; every parameter has the default described on its property.
    public init(
        maximumAge: Duration? = .seconds(7 * 86_400), maximumCount: Int? = nil, interval: Duration = .seconds(300)
    ) {
        self.maximumAge = maximumAge
        self.maximumCount = maximumCount.map { max(0, $0) }
        self.interval = interval
    }
}
