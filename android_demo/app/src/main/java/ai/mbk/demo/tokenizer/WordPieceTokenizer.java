package ai.mbk.demo.tokenizer;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.text.Normalizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * BERT WordPiece tokenizer that reproduces Hugging Face's {@code BertTokenizerFast} token ids.
 *
 * <p>Pure Java (no android.* imports) so the exact same class is unit-tested on a desktop JDK
 * against the Python tokenizer. Pipeline, in HF's order:
 * <ol>
 *   <li>split the raw text on special tokens written literally ({@code [CLS]}, {@code [SEP]}, ...),
 *       leftmost-longest, case-sensitive: they map straight to their ids;</li>
 *   <li>clean text: drop NUL, U+FFFD and control characters, map whitespace to a space;</li>
 *   <li>surround CJK ideographs with spaces;</li>
 *   <li>strip accents (NFD, drop non-spacing marks) when enabled (default: same as lowercase);</li>
 *   <li>lowercase per code point;</li>
 *   <li>split on whitespace and isolate punctuation;</li>
 *   <li>greedy longest-match WordPiece with {@code ##} continuations; a word longer than
 *       100 code points, or one that cannot be fully matched, becomes {@code [UNK]};</li>
 *   <li>add {@code [CLS]}/{@code [SEP]} and truncate to {@code maxLength}.</li>
 * </ol>
 * Character classes come from {@link BertUnicodeTables}, generated from the Rust tokenizer itself,
 * so results do not depend on the Unicode version of the phone. Strings are walked by code point,
 * so emoji and other surrogate pairs count as one character, as in Rust.
 */
public final class WordPieceTokenizer {
    public static final int MAX_INPUT_CHARS_PER_WORD = 100;
    public static final String CONTINUATION_PREFIX = "##";
    private static final String[] DEFAULT_SPECIALS = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

    private final Map<String, Integer> vocab;
    private final boolean doLowerCase;
    private final boolean stripAccents;
    private final boolean tokenizeChineseChars;
    private final int maxLength;
    private final List<String> specialTokens;
    public final int clsId;
    public final int sepId;
    public final int padId;
    public final int unkId;

    /** Ids and masks ready for the model; {@code length} is the number of real tokens. */
    public static final class Encoding {
        public final long[] inputIds;
        public final long[] attentionMask;
        public final long[] tokenTypeIds;
        public final int length;

        Encoding(long[] inputIds, long[] attentionMask, long[] tokenTypeIds, int length) {
            this.inputIds = inputIds;
            this.attentionMask = attentionMask;
            this.tokenTypeIds = tokenTypeIds;
            this.length = length;
        }
    }

    /**
     * @param vocabTokens vocab.txt lines: the token on line i has id i
     * @param doLowerCase lowercase the text (uncased models)
     * @param stripAccents strip accents; {@code null} means "same as doLowerCase", as in HF
     * @param tokenizeChineseChars put spaces around CJK ideographs
     * @param maxLength maximum sequence length including [CLS] and [SEP]
     * @param specialTokens tokens never split nor normalized; {@code null} for BERT's five
     */
    public WordPieceTokenizer(List<String> vocabTokens, boolean doLowerCase, Boolean stripAccents,
                              boolean tokenizeChineseChars, int maxLength, List<String> specialTokens) {
        if (maxLength < 2) {
            throw new IllegalArgumentException("maxLength must be >= 2 (room for [CLS] and [SEP]), got " + maxLength);
        }
        this.vocab = new HashMap<>(vocabTokens.size() * 2);
        for (int i = 0; i < vocabTokens.size(); i++) {
            vocab.putIfAbsent(vocabTokens.get(i), i);
        }
        this.doLowerCase = doLowerCase;
        this.stripAccents = stripAccents == null ? doLowerCase : stripAccents;
        this.tokenizeChineseChars = tokenizeChineseChars;
        this.maxLength = maxLength;
        List<String> specials = new ArrayList<>();
        for (String s : specialTokens == null ? Arrays.asList(DEFAULT_SPECIALS) : specialTokens) {
            if (vocab.containsKey(s) && !s.isEmpty()) {
                specials.add(s);
            }
        }
        this.specialTokens = Collections.unmodifiableList(specials);
        this.clsId = requireId("[CLS]");
        this.sepId = requireId("[SEP]");
        this.unkId = requireId("[UNK]");
        this.padId = vocab.containsKey("[PAD]") ? vocab.get("[PAD]") : 0;
    }

    /** Read vocab.txt (UTF-8, one token per line) from a stream. */
    public static List<String> readVocab(InputStream in) throws IOException {
        List<String> tokens = new ArrayList<>();
        try (BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
            String line;
            while ((line = r.readLine()) != null) {
                // HF strips the line ending only (tokens never contain spaces).
                tokens.add(line.endsWith("\r") ? line.substring(0, line.length() - 1) : line);
            }
        }
        return tokens;
    }

    private int requireId(String token) {
        Integer id = vocab.get(token);
        if (id == null) {
            throw new IllegalArgumentException("vocab has no " + token + " token; is this a BERT WordPiece vocab.txt?");
        }
        return id;
    }

    public int vocabSize() {
        return vocab.size();
    }

    public int maxLength() {
        return maxLength;
    }

    /** Token ids with [CLS] and [SEP], truncated to maxLength (no padding). */
    public int[] encode(String text) {
        List<Integer> ids = new ArrayList<>();
        for (String tok : tokenize(text)) {
            Integer id = vocab.get(tok);
            ids.add(id == null ? unkId : id);
        }
        int keep = Math.min(ids.size(), maxLength - 2);
        int[] out = new int[keep + 2];
        out[0] = clsId;
        for (int i = 0; i < keep; i++) {
            out[i + 1] = ids.get(i);
        }
        out[keep + 1] = sepId;
        return out;
    }

    /**
     * Model inputs. {@code padTo <= 0} returns exactly the real tokens (dynamic-shape models);
     * otherwise pads with [PAD] and attention mask 0 up to {@code padTo}.
     */
    public Encoding encodeForModel(String text, int padTo) {
        int[] ids = encode(text);
        int n = Math.max(ids.length, padTo);
        long[] inputIds = new long[n];
        long[] mask = new long[n];
        long[] types = new long[n];
        for (int i = 0; i < n; i++) {
            inputIds[i] = i < ids.length ? ids[i] : padId;
            mask[i] = i < ids.length ? 1 : 0;
        }
        return new Encoding(inputIds, mask, types, ids.length);
    }

    /** WordPiece tokens (strings) of {@code text}, special tokens kept whole; no [CLS]/[SEP]. */
    public List<String> tokenize(String text) {
        List<String> out = new ArrayList<>();
        int pos = 0;
        while (pos <= text.length()) {
            int bestAt = -1;
            String best = null;
            for (int i = pos; i < text.length() && bestAt < 0; i++) {
                for (String s : specialTokens) {
                    if (text.startsWith(s, i) && (best == null || s.length() > best.length())) {
                        best = s;
                        bestAt = i;
                    }
                }
            }
            String piece = bestAt < 0 ? text.substring(pos) : text.substring(pos, bestAt);
            for (String word : basicTokenize(piece)) {
                wordPiece(word, out);
            }
            if (bestAt < 0) {
                break;
            }
            out.add(best);
            pos = bestAt + best.length();
        }
        return out;
    }

    /** Normalize and pre-tokenize (BasicTokenizer): words and single punctuation marks. */
    public List<String> basicTokenize(String text) {
        String normalized = normalize(text);
        List<String> words = new ArrayList<>();
        StringBuilder cur = new StringBuilder();
        for (int i = 0; i < normalized.length(); ) {
            int cp = normalized.codePointAt(i);
            i += Character.charCount(cp);
            if (cp == ' ' || BertUnicodeTables.contains(BertUnicodeTables.WHITESPACE, cp)) {
                flush(cur, words);
            } else if (BertUnicodeTables.contains(BertUnicodeTables.PUNCTUATION, cp)) {
                flush(cur, words);
                words.add(new String(Character.toChars(cp)));
            } else {
                cur.appendCodePoint(cp);
            }
        }
        flush(cur, words);
        return words;
    }

    private static void flush(StringBuilder cur, List<String> words) {
        if (cur.length() > 0) {
            words.add(cur.toString());
            cur.setLength(0);
        }
    }

    /** HF BertNormalizer: clean text, CJK spacing, accent stripping, lowercasing. */
    public String normalize(String text) {
        StringBuilder sb = new StringBuilder(text.length() + 8);
        for (int i = 0; i < text.length(); ) {
            int cp = text.codePointAt(i);
            i += Character.charCount(cp);
            if (BertUnicodeTables.contains(BertUnicodeTables.REMOVED, cp)) {
                continue; // NUL, U+FFFD, control/format chars, lone surrogates
            }
            if (BertUnicodeTables.contains(BertUnicodeTables.WHITESPACE, cp)) {
                sb.append(' ');
            } else if (tokenizeChineseChars && isChineseChar(cp)) {
                sb.append(' ').appendCodePoint(cp).append(' ');
            } else {
                sb.appendCodePoint(cp);
            }
        }
        String s = sb.toString();
        if (stripAccents) {
            String nfd = Normalizer.normalize(s, Normalizer.Form.NFD);
            StringBuilder kept = new StringBuilder(nfd.length());
            for (int i = 0; i < nfd.length(); ) {
                int cp = nfd.codePointAt(i);
                i += Character.charCount(cp);
                if (!BertUnicodeTables.contains(BertUnicodeTables.MARK_NONSPACING, cp)) {
                    kept.appendCodePoint(cp);
                }
            }
            s = kept.toString();
        }
        if (doLowerCase) {
            StringBuilder low = new StringBuilder(s.length());
            for (int i = 0; i < s.length(); ) {
                int cp = s.codePointAt(i);
                i += Character.charCount(cp);
                if (cp == 0x130) {
                    low.append("i\u0307"); // the one code point whose lowercase is two code points
                } else {
                    low.appendCodePoint(BertUnicodeTables.lower(cp));
                }
            }
            s = low.toString();
        }
        return s;
    }

    /** Same CJK blocks as HF (BERT's "Chinese character" definition). */
    static boolean isChineseChar(int cp) {
        return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF)
                || (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F)
                || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF)
                || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
    }

    private void wordPiece(String word, List<String> out) {
        int nChars = word.codePointCount(0, word.length());
        if (nChars > MAX_INPUT_CHARS_PER_WORD) {
            out.add("[UNK]");
            return;
        }
        List<String> pieces = new ArrayList<>();
        int start = 0;
        while (start < word.length()) {
            int end = word.length();
            String match = null;
            while (start < end) {
                String sub = word.substring(start, end);
                if (start > 0) {
                    sub = CONTINUATION_PREFIX + sub;
                }
                if (vocab.containsKey(sub)) {
                    match = sub;
                    break;
                }
                end = word.offsetByCodePoints(end, -1);
            }
            if (match == null) {
                out.add("[UNK]");
                return;
            }
            pieces.add(match);
            start = end;
        }
        out.addAll(pieces);
    }
}
