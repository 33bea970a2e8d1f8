package ai.mbk.demo;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;

/**
 * Runs {@link GoldenRule} on cases read from stdin, one per line, tab-separated:
 * wantIds, wantLogits, wantLabel, atol, checkLabel, ids, logits (lists comma-separated); the labels are
 * the arguments. Prints "OK" or the failure per case. Used by tests/phone/test_golden.py.
 */
public final class GoldenRuleMain {
    public static void main(String[] args) throws Exception {
        List<String> labels = Arrays.asList(args);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line; (line = in.readLine()) != null && !line.isEmpty(); ) {
            String[] f = line.split("\t", -1);
            String why = GoldenRule.check(ints(f[0]), doubles(f[1]), f[2], Double.parseDouble(f[3]),
                    Boolean.parseBoolean(f[4]), ints(f[5]), floats(f[6]), labels);
            System.out.println(why == null ? "OK" : why);
        }
    }

    private static int[] ints(String s) {
        return s.isEmpty() ? new int[0] : Arrays.stream(s.split(",")).mapToInt(Integer::parseInt).toArray();
    }

    private static double[] doubles(String s) {
        return s.isEmpty() ? new double[0] : Arrays.stream(s.split(",")).mapToDouble(Double::parseDouble).toArray();
    }

    private static float[] floats(String s) {
        double[] d = doubles(s);
        float[] out = new float[d.length];
        for (int i = 0; i < d.length; i++) out[i] = (float) d[i];
        return out;
    }
}
