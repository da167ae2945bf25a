import Foundation

/// One row of the results: a workload in one synchronous mode.
struct BenchResult: Codable, Sendable {
    var workload: String
    var mode: String
    var echoPerSecond: Double
    var baselinePerSecond: Double
    var ratio: Double
    var p50Milliseconds: Double?
    var p99Milliseconds: Double?
    var p999Milliseconds: Double?
    var peakRSSMiB: Double?
    /// Actions moved by Echo in this row.
    var actions: Int
    /// What the row measured and with which settings.
    var notes: String

    enum CodingKeys: String, CodingKey {
        case workload, mode
        case echoPerSecond = "echo_per_s"
        case baselinePerSecond = "baseline_per_s"
        case ratio
        case p50Milliseconds = "p50_ms"
        case p99Milliseconds = "p99_ms"
        case p999Milliseconds = "p999_ms"
        case peakRSSMiB = "peak_rss_mib"
        case actions, notes
    }

    init(
        workload: Workload, mode: Mode, actions: Int, echoPerSecond: Double, baselinePerSecond: Double,
        notes: String
    ) {
        self.workload = workload.rawValue
        self.mode = mode.rawValue
        self.actions = actions
        self.echoPerSecond = echoPerSecond
        self.baselinePerSecond = baselinePerSecond
        self.ratio = baselinePerSecond > 0 ? echoPerSecond / baselinePerSecond : 0
        self.notes = notes
    }
}

enum Report {
    static func table(_ results: [BenchResult]) -> String {
        let header = ["workload", "mode", "Echo actions/s", "baseline actions/s", "ratio", "p99 ms", "peak RSS MiB"]
        var rows = [header]
        for result in results {
            rows.append([
                result.workload,
                result.mode,
                format(result.echoPerSecond, digits: 0),
                format(result.baselinePerSecond, digits: 0),
                format(result.ratio, digits: 2) + "×",
                result.p99Milliseconds.map { format($0, digits: 2) } ?? "",
                result.peakRSSMiB.map { format($0, digits: 1) } ?? "",
            ])
        }
        var widths = [Int](repeating: 0, count: header.count)
        for row in rows {
            for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        func line(_ row: [String]) -> String {
            "| "
                + row.enumerated().map { index, cell in
                    let pad = String(repeating: " ", count: widths[index] - cell.count)
                    return index < 2 ? cell + pad : pad + cell
                }.joined(separator: " | ") + " |"
        }
        var lines = [line(header)]
        lines.append(
            "|"
                + widths.enumerated().map { index, width in
                    index < 2
                        ? String(repeating: "-", count: width + 2) : String(repeating: "-", count: width + 1) + ":"
                }.joined(separator: "|") + "|")
        for row in rows.dropFirst() { lines.append(line(row)) }
        return lines.joined(separator: "\n")
    }

    static func notes(_ results: [BenchResult]) -> String {
        results.map { "- \($0.workload) \($0.mode): \($0.notes)" }.joined(separator: "\n")
    }

    static func json(_ results: [BenchResult]) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(results)
    }

    static func format(_ value: Double, digits: Int) -> String {
        guard value.isFinite else { return "-" }
        if digits == 0 {
            // Thousands separated by commas.
            let whole = Int(value.rounded())
            var text = String(abs(whole))
            var index = text.count - 3
            while index > 0 {
                text.insert(",", at: text.index(text.startIndex, offsetBy: index))
                index -= 3
            }
            return whole < 0 ? "-" + text : text
        }
        return String(format: "%.\(digits)f", value)
    }
}
