package ai.mbk.demo.tokenizer;

import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * Parity driver used by tests/phone/test_java_tokenizer.py (plain JDK, no JUnit needed).
 *
 * <pre>
 * java ai.mbk.demo.tokenizer.TokenizerParityMain VOCAB LOWERCASE STRIP_ACCENTS(true|false|null) MAX_LENGTH TEXTS
 * </pre>
 * TEXTS holds one text per line as hex of its UTF-8 bytes (so newlines and control characters
 * survive). For each text, prints one line: comma-separated ids, a tab, then the basic-tokenizer
 * words (normalized + pre-tokenized) as space-separated UTF-8 hex.
 */
public final class TokenizerParityMain {
    public static void main(String[] args) throws IOException {
        if (args.length != 5) {
            System.err.println("usage: TokenizerParityMain VOCAB LOWERCASE STRIP_ACCENTS MAX_LENGTH TEXTS");
            System.exit(2);
        }
        List<String> vocab = WordPieceTokenizer.readVocab(new FileInputStream(args[0]));
        Boolean strip = "null".equals(args[2]) ? null : Boolean.valueOf(args[2]);
        WordPieceTokenizer tok = new WordPieceTokenizer(vocab, Boolean.parseBoolean(args[1]), strip, true,
                Integer.parseInt(args[3]), null);
        PrintWriter out = new PrintWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8));
        try (BufferedReader r = new BufferedReader(new InputStreamReader(new FileInputStream(args[4]), StandardCharsets.UTF_8))) {
            String line;
            while ((line = r.readLine()) != null) {
                String text = new String(unhex(line.trim()), StandardCharsets.UTF_8);
                StringBuilder sb = new StringBuilder();
                int[] ids = tok.encode(text);
                for (int i = 0; i < ids.length; i++) {
                    if (i > 0) sb.append(',');
                    sb.append(ids[i]);
                }
                sb.append('\t');
                List<String> words = tok.basicTokenize(text);
                for (int i = 0; i < words.size(); i++) {
                    if (i > 0) sb.append(' ');
                    sb.append(hex(words.get(i).getBytes(StandardCharsets.UTF_8)));
                }
                out.println(sb);
            }
        }
        out.flush();
    }

    static byte[] unhex(String s) {
        byte[] b = new byte[s.length() / 2];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return b;
    }

    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder(b.length * 2);
        for (byte x : b) {
            sb.append(String.format("%02x", x & 0xff));
        }
        return sb.toString();
    }
}
