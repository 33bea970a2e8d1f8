// Minimal SwiftUI demo: loads the bundle (MBKDemo/bundle, added to the app target as a folder
// reference), runs the golden self-test, then classifies typed text with CoreML.
import CoreML
import SwiftUI

final class BundleModel {
    let meta: [String: Any]
    let labels: [String]
    let tokenizer: WordPieceTokenizer
    let model: MLModel

    init() throws {
        let dir = Bundle.main.url(forResource: "bundle", withExtension: nil)!
        meta = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("model_meta.json"))) as! [String: Any]
        let tok = meta["tokenizer"] as! [String: Any]
        let vocab = try String(contentsOf: dir.appendingPathComponent("vocab.txt"), encoding: .utf8)
            .components(separatedBy: "\n")
        let vocabTokens = vocab.last == "" ? Array(vocab.dropLast()) : vocab
        tokenizer = WordPieceTokenizer(vocabTokens: vocabTokens, doLowerCase: tok["do_lower_case"] as! Bool,
                                       stripAccents: tok["strip_accents"] as? Bool, maxLength: meta["max_length"] as! Int)
        labels = meta["labels"] as! [String]
        // Xcode compiles model.mlpackage into model.mlmodelc inside the app.
        let compiled = Bundle.main.url(forResource: "model", withExtension: "mlmodelc")!
        model = try MLModel(contentsOf: compiled)
    }

    func logits(ids: [Int]) throws -> [Float] {
        let n = ids.count
        func array(_ values: [Int]) throws -> MLMultiArray {
            let a = try MLMultiArray(shape: [1, NSNumber(value: n)], dataType: .int32)
            for (i, v) in values.enumerated() { a[i] = NSNumber(value: v) }
            return a
        }
        var inputs: [String: Any] = ["input_ids": try array(ids), "attention_mask": try array(Array(repeating: 1, count: n))]
        if (meta["input_names"] as! [String]).contains("token_type_ids") { inputs["token_type_ids"] = try array(Array(repeating: 0, count: n)) }
        let out = try model.prediction(from: MLDictionaryFeatureProvider(dictionary: inputs))
        let name = out.featureNames.first!
        let arr = out.featureValue(for: name)!.multiArrayValue!
        return (0..<arr.count).map { arr[$0].floatValue }
    }

    /// Golden vectors judged by checkVector: the rule of mobilebert_kit/phone/golden.py (and GoldenRule.java).
    func selfTest() throws -> String {
        let dir = Bundle.main.url(forResource: "bundle", withExtension: nil)!
        let golden = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("golden.json"))) as! [String: Any]
        let defaultAtol = golden["atol"] as! Double  // bundles written before per-vector atol
        var failures: [String] = []
        for (n, g) in (golden["vectors"] as! [[String: Any]]).enumerated() {
            let ids = tokenizer.encode(g["text"] as! String)
            let got = try logits(ids: ids)
            if let why = BundleModel.checkVector(g, ids: ids, logits: got, labels: labels, defaultAtol: defaultAtol) {
                failures.append("golden #\(n): \(why)")
            }
        }
        return failures.isEmpty ? "self-test OK" : "self-test FAILED:\n" + failures.joined(separator: "\n")
    }

    /// Why one golden vector fails (nil: it passes): exact token ids, every logit within the vector's own
    /// atol, and the label when check_label is set. Line for line golden.py's check_vector.
    static func checkVector(_ g: [String: Any], ids: [Int], logits: [Float], labels: [String], defaultAtol: Double) -> String? {
        guard ids == g["input_ids"] as! [Int] else { return "token ids differ" }
        let want = g["logits"] as! [Double]
        guard logits.count == want.count else { return "\(logits.count) logits, expected \(want.count)" }
        let atol = g["atol"] as? Double ?? defaultAtol
        var worst = 0.0
        for (a, b) in zip(logits, want) { let d = abs(Double(a) - b); worst = max(worst, d.isNaN ? .infinity : d) }
        if !(worst <= atol) { return String(format: "max |logit diff| %.2e > atol %.1e", worst, atol) }
        let best = logits.indices.reduce(0) { logits[$1] > logits[$0] ? $1 : $0 }
        let wantLabel = g["label"] as! String
        if (g["check_label"] as? Bool ?? false) && labels[best] != wantLabel { return "label \(labels[best]) != \(wantLabel)" }
        return nil
    }
}

struct ContentView: View {
    @State private var text = ""
    @State private var result = "loading…"
    @State private var model: BundleModel?

    var body: some View {
        VStack(spacing: 16) {
            TextField("Type a review", text: $text).textFieldStyle(.roundedBorder)
            Button("Classify") { classify() }
            Text(result).font(.system(.body, design: .monospaced))
        }
        .padding()
        .task {
            do { let m = try BundleModel(); model = m; result = try m.selfTest() } catch { result = "Error: \(error)" }
        }
    }

    private func classify() {
        guard let m = model else { return }
        do {
            let ids = m.tokenizer.encode(text)
            let t0 = Date()
            let l = try m.logits(ids: ids)
            let ms = Date().timeIntervalSince(t0) * 1000
            let e = l.map { exp($0 - l.max()!) }, p = e.map { $0 / e.reduce(0, +) }
            let best = p.indices.max { p[$0] < p[$1] }!
            result = String(format: "%@ (%.1f%%)\n%.2f ms, %d tokens", m.labels[best], 100 * p[best], ms, ids.count)
        } catch { result = "Error: \(error)" }
    }
}

@main
struct MBKDemoApp: App {
    var body: some Scene { WindowGroup { ContentView() } }
}
