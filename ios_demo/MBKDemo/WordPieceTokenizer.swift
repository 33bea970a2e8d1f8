// Port of android_demo/.../WordPieceTokenizer.java (the parity-tested reference): same pipeline,
// same generated tables (BertUnicodeTables.swift), walking Unicode scalars like Java walks code points.
import Foundation

struct WordPieceTokenizer {
    static let maxInputCharsPerWord = 100
    let vocab: [String: Int]
    let doLowerCase: Bool
    let stripAccents: Bool
    let tokenizeChineseChars: Bool
    let maxLength: Int
    let specialTokens: [String]
    let clsId: Int, sepId: Int, unkId: Int, padId: Int

    init(vocabTokens: [String], doLowerCase: Bool, stripAccents: Bool?, tokenizeChineseChars: Bool = true, maxLength: Int,
         specialTokens: [String] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) {
        var v = [String: Int]()
        for (i, t) in vocabTokens.enumerated() where v[t] == nil { v[t] = i }
        vocab = v
        self.doLowerCase = doLowerCase
        self.stripAccents = stripAccents ?? doLowerCase
        self.tokenizeChineseChars = tokenizeChineseChars
        self.maxLength = maxLength
        self.specialTokens = specialTokens.filter { v[$0] != nil }
        clsId = v["[CLS]"]!; sepId = v["[SEP]"]!; unkId = v["[UNK]"]!; padId = v["[PAD]"] ?? 0
    }

    /// Ids with [CLS]/[SEP], truncated to maxLength (no padding).
    func encode(_ text: String) -> [Int] {
        let ids = tokenize(text).map { vocab[$0] ?? unkId }
        return [clsId] + ids.prefix(maxLength - 2) + [sepId]
    }

    func tokenize(_ text: String) -> [String] {
        // Split on special tokens first (leftmost-longest, case-sensitive), on unicode scalars.
        let scalars = Array(text.unicodeScalars)
        let specials = specialTokens.map { Array($0.unicodeScalars) }
        var out = [String](), pos = 0, i = 0
        while i <= scalars.count {
            var best: [Unicode.Scalar]? = nil
            if i < scalars.count {
                for s in specials where i + s.count <= scalars.count && Array(scalars[i..<i + s.count]) == s {
                    if best == nil || s.count > best!.count { best = s }
                }
            }
            if best != nil || i == scalars.count {
                var piece = String.UnicodeScalarView(); piece.append(contentsOf: scalars[pos..<i])
                for word in basicTokenize(String(piece)) { wordPiece(word, &out) }
                guard let b = best else { break }
                out.append(String(String.UnicodeScalarView(b)))
                i += b.count; pos = i
            } else {
                i += 1
            }
        }
        return out
    }

    func basicTokenize(_ text: String) -> [String] {
        var words = [String](), cur = String.UnicodeScalarView()
        func flush() { if !cur.isEmpty { words.append(String(cur)); cur = String.UnicodeScalarView() } }
        for s in normalize(text).unicodeScalars {
            let cp = s.value
            if cp == 0x20 || BertUnicodeTables.contains(BertUnicodeTables.whitespace, cp) { flush() }
            else if BertUnicodeTables.contains(BertUnicodeTables.punctuation, cp) { flush(); words.append(String(s)) }
            else { cur.append(s) }
        }
        flush()
        return words
    }

    func normalize(_ text: String) -> String {
        var clean = String.UnicodeScalarView()
        for s in text.unicodeScalars {
            let cp = s.value
            if BertUnicodeTables.contains(BertUnicodeTables.removed, cp) { continue }
            if BertUnicodeTables.contains(BertUnicodeTables.whitespace, cp) { clean.append(" ") }
            else if tokenizeChineseChars && Self.isChineseChar(cp) { clean.append(" "); clean.append(s); clean.append(" ") }
            else { clean.append(s) }
        }
        var s = String(clean)
        if stripAccents {
            // decomposedStringWithCanonicalMapping is NFD.
            s = String(String.UnicodeScalarView(s.decomposedStringWithCanonicalMapping.unicodeScalars.filter {
                !BertUnicodeTables.contains(BertUnicodeTables.markNonspacing, $0.value) }))
        }
        if doLowerCase {
            var low = String.UnicodeScalarView()
            for sc in s.unicodeScalars {
                if sc.value == 0x130 { low.append("i"); low.append("\u{0307}") }
                else { low.append(Unicode.Scalar(BertUnicodeTables.lower(sc.value)) ?? sc) }
            }
            s = String(low)
        }
        return s
    }

    static func isChineseChar(_ cp: UInt32) -> Bool {
        (0x4E00...0x9FFF).contains(cp) || (0x3400...0x4DBF).contains(cp) || (0x20000...0x2A6DF).contains(cp)
            || (0x2A700...0x2B73F).contains(cp) || (0x2B740...0x2B81F).contains(cp) || (0x2B920...0x2CEAF).contains(cp)
            || (0xF900...0xFAFF).contains(cp) || (0x2F800...0x2FA1F).contains(cp)
    }

    private func wordPiece(_ word: String, _ out: inout [String]) {
        let chars = Array(word.unicodeScalars)
        if chars.count > Self.maxInputCharsPerWord { out.append("[UNK]"); return }
        var pieces = [String](), start = 0
        while start < chars.count {
            var end = chars.count
            var match: String? = nil
            while start < end {
                var sub = String(String.UnicodeScalarView(chars[start..<end]))
                if start > 0 { sub = "##" + sub }
                if vocab[sub] != nil { match = sub; break }
                end -= 1
            }
            guard let m = match else { out.append("[UNK]"); return }
            pieces.append(m)
            start = end
        }
        out.append(contentsOf: pieces)
    }
}
