package ai.mbk.demo;

import ai.mbk.demo.tokenizer.WordPieceTokenizer;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.LongBuffer;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/** A packaged bundle (model_meta.json, vocab.txt, model.ort, golden.json) loaded into ONNX Runtime. */
final class BundleModel implements AutoCloseable {
    /** Reads bundle files from the APK assets or from a pushed folder. */
    interface FileSource {
        byte[] read(String name) throws IOException;
    }

    static final class Prediction {
        final String label;
        final float confidence;
        final float[] logits;
        final double millis;
        final int tokens;

        Prediction(String label, float confidence, float[] logits, double millis, int tokens) {
            this.label = label;
            this.confidence = confidence;
            this.logits = logits;
            this.millis = millis;
            this.tokens = tokens;
        }
    }

    final JSONObject meta;
    final String modelSha256;
    final List<String> labels;
    private final WordPieceTokenizer tokenizer;
    private final OrtEnvironment env;
    private final OrtSession session;
    private final List<String> inputNames;
    private final int padTo;
    private final FileSource files;

    BundleModel(FileSource files) throws IOException, JSONException, OrtException {
        this.files = files;
        this.meta = new JSONObject(new String(files.read("model_meta.json"), "UTF-8"));
        JSONObject tok = meta.getJSONObject("tokenizer");
        List<String> vocab = WordPieceTokenizer.readVocab(new ByteArrayInputStream(files.read(tok.getString("vocab_file"))));
        if (vocab.size() != tok.getInt("vocab_size")) {
            throw new IOException("vocab.txt has " + vocab.size() + " tokens, model_meta.json says " + tok.getInt("vocab_size"));
        }
        Boolean strip = tok.isNull("strip_accents") ? null : tok.getBoolean("strip_accents");
        tokenizer = new WordPieceTokenizer(vocab, tok.getBoolean("do_lower_case"), strip,
                tok.optBoolean("tokenize_chinese_chars", true), meta.getInt("max_length"), null);
        padTo = meta.isNull("fixed_length") ? 0 : meta.getInt("fixed_length");
        JSONArray l = meta.getJSONArray("labels");
        String[] names = new String[l.length()];
        for (int i = 0; i < names.length; i++) names[i] = l.getString(i);
        labels = Arrays.asList(names);
        JSONArray in = meta.getJSONArray("input_names");
        String[] ins = new String[in.length()];
        for (int i = 0; i < ins.length; i++) ins[i] = in.getString(i);
        inputNames = Arrays.asList(ins);

        byte[] model = files.read(meta.getString("model_file"));
        modelSha256 = sha256(model);
        if (!modelSha256.equals(meta.getString("model_sha256"))) {
            throw new IOException("model file sha256 " + modelSha256.substring(0, 12) + " does not match model_meta.json");
        }
        env = OrtEnvironment.getEnvironment();
        OrtSession.SessionOptions opts = new OrtSession.SessionOptions();
        opts.setIntraOpNumThreads(1);
        session = env.createSession(model, opts);
    }

    Prediction predict(String text) throws OrtException {
        WordPieceTokenizer.Encoding enc = tokenizer.encodeForModel(text, padTo);
        return run(enc.inputIds, enc.attentionMask, enc.length);
    }

    private Prediction run(long[] ids, long[] mask, int tokens) throws OrtException {
        long[] shape = {1, ids.length};
        Map<String, OnnxTensor> feeds = new HashMap<>();
        try {
            for (String name : inputNames) {
                long[] data = name.equals("input_ids") ? ids : name.equals("attention_mask") ? mask : new long[ids.length];
                feeds.put(name, OnnxTensor.createTensor(env, LongBuffer.wrap(data), shape));
            }
            long t0 = System.nanoTime();
            try (OrtSession.Result r = session.run(feeds)) {
                double ms = (System.nanoTime() - t0) / 1e6;
                float[] logits = ((float[][]) r.get(0).getValue())[0];
                int best = 0;
                for (int i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
                return new Prediction(labels.get(best), softmax(logits)[best], logits, ms, tokens);
            }
        } finally {
            for (OnnxTensor t : feeds.values()) t.close();
        }
    }

    /**
     * Golden vectors judged by {@link GoldenRule} (the rule of mobilebert_kit/phone/golden.py): the Java tokenizer
     * gives the exact ids, every logit is within that vector's own atol (derived from the spread measured
     * across runtime versions and thread counts), and the label matches where check_label is set.
     */
    String selfTest() throws IOException, JSONException, OrtException {
        JSONObject golden = new JSONObject(new String(files.read(meta.getString("golden_file")), "UTF-8"));
        double defaultAtol = golden.getDouble("atol");  // bundles written before per-vector atol
        JSONArray vectors = golden.getJSONArray("vectors");
        StringBuilder failures = new StringBuilder();
        int labelsChecked = 0;
        for (int v = 0; v < vectors.length(); v++) {
            JSONObject g = vectors.getJSONObject(v);
            String text = g.getString("text");
            WordPieceTokenizer.Encoding enc = tokenizer.encodeForModel(text, padTo);
            float[] logits = run(enc.inputIds, enc.attentionMask, enc.length).logits;
            boolean checkLabel = g.optBoolean("check_label", false);
            if (checkLabel) labelsChecked++;
            String why = GoldenRule.check(ints(g.getJSONArray("input_ids")), doubles(g.getJSONArray("logits")),
                    g.getString("label"), g.optDouble("atol", defaultAtol), checkLabel,
                    tokenizer.encode(text), logits, labels);
            if (why != null) failures.append("golden #").append(v).append(": ").append(why).append('\n');
        }
        JSONObject rt = golden.optJSONObject("runtime");
        String want = rt == null ? "?" : rt.optString("version", "?");
        String have = OrtEnvironment.getEnvironment().getVersion();
        String versions = want.equals(have) ? "onnxruntime " + have
                : "golden logits from onnxruntime " + want + ", this app runs " + have;
        return failures.length() == 0
                ? String.format("self-test OK: %d golden vectors, %d labels checked (%s)", vectors.length(),
                        labelsChecked, versions)
                : "self-test FAILED (" + versions + "):\n" + failures;
    }

    private static int[] ints(JSONArray a) throws JSONException {
        int[] out = new int[a.length()];
        for (int i = 0; i < out.length; i++) out[i] = a.getInt(i);
        return out;
    }

    private static double[] doubles(JSONArray a) throws JSONException {
        double[] out = new double[a.length()];
        for (int i = 0; i < out.length; i++) out[i] = a.getDouble(i);
        return out;
    }

    /** Benchmark line fields: p50/p90 over {@code runs} timed runs after {@code warmup}. */
    JSONObject benchmark(String text, int warmup, int runs) throws OrtException, JSONException {
        for (int i = 0; i < warmup; i++) predict(text);
        double[] ms = new double[runs];
        Prediction last = null;
        for (int i = 0; i < runs; i++) {
            last = predict(text);
            ms[i] = last.millis;
        }
        Arrays.sort(ms);
        double mean = 0;
        for (double x : ms) mean += x / runs;
        return new JSONObject()
                .put("warmup", warmup).put("runs", runs)
                .put("p50_ms", percentile(ms, 50)).put("p90_ms", percentile(ms, 90)).put("mean_ms", mean)
                .put("tokens", last.tokens).put("label", last.label)
                .put("model_sha256", modelSha256).put("ort", ai.onnxruntime.OrtEnvironment.getEnvironment().getVersion());
    }

    static double percentile(double[] sorted, double q) {
        double pos = (sorted.length - 1) * q / 100.0;
        int lo = (int) Math.floor(pos), hi = (int) Math.ceil(pos);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    }

    static float[] softmax(float[] x) {
        float max = Float.NEGATIVE_INFINITY;
        for (float v : x) max = Math.max(max, v);
        float sum = 0;
        float[] out = new float[x.length];
        for (int i = 0; i < x.length; i++) sum += (out[i] = (float) Math.exp(x[i] - max));
        for (int i = 0; i < x.length; i++) out[i] /= sum;
        return out;
    }

    static String sha256(byte[] data) {
        try {
            byte[] d = MessageDigest.getInstance("SHA-256").digest(data);
            StringBuilder sb = new StringBuilder();
            for (byte b : d) sb.append(String.format("%02x", b & 0xff));
            return sb.toString();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    @Override
    public void close() throws OrtException {
        session.close();
    }
}
