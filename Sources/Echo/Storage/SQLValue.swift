/// A value bound to, or read from, an SQL statement in ``Transaction``.
public enum SQLValue: Sendable, Hashable {
    /// SQL NULL.
    case null
    /// A 64-bit integer.
    case integer(Int64)
    /// A double.
    case real(Double)
    /// UTF-8 text; NUL characters are kept.
    case text(String)
    /// Bytes.
    case blob([UInt8])
}

extension SQLValue: ExpressibleByIntegerLiteral, ExpressibleByStringLiteral, ExpressibleByFloatLiteral,
    ExpressibleByNilLiteral
{
    /// An integer value.
    public init(integerLiteral value: Int64) { self = .integer(value) }
    /// A text value.
    public init(stringLiteral value: String) { self = .text(value) }
    /// A real value.
    public init(floatLiteral value: Double) { self = .real(value) }
    /// NULL.
    public init(nilLiteral: ()) { self = .null }
}
