package ai.mbk.demo;

import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * The golden self-test rule, line for line the same as {@code check_vector} in mobilebert_kit/phone/golden.py
 * (and {@code checkVector} in the iOS ContentView.swift): exact token ids, every logit within the
 * vector's own atol, and the label when the vector's margin makes it certain ({@code check_label}).
 * Pure Java (no Android, no ONNX Runtime) so tests/phone/test_golden.py compiles and runs it with javac.
 */
final class GoldenRule {
    private GoldenRule() {}

    /** Why one golden vector fails on this device, or null when it passes. */
    static String check(int[] wantIds, double[] wantLogits, String wantLabel, double atol, boolean checkLabel,
                        int[] ids, float[] logits, List<String> labels) {
        if (!Arrays.equals(ids, wantIds)) return "token ids differ";
        if (logits.length != wantLogits.length) return logits.length + " logits, expected " + wantLogits.length;
        double worst = 0;
        for (int i = 0; i < logits.length; i++) {
            double d = Math.abs((double) logits[i] - wantLogits[i]);
            worst = Math.max(worst, Double.isNaN(d) ? Double.POSITIVE_INFINITY : d);
        }
        if (!(worst <= atol)) return String.format(Locale.ROOT, "max |logit diff| %.2e > atol %.1e", worst, atol);
        int best = 0;
        for (int i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
        if (checkLabel && !labels.get(best).equals(wantLabel)) return "label " + labels.get(best) + " != " + wantLabel;
        return null;
    }
}
