package ai.mbk.demo.tokenizer;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.util.Arrays;
import java.util.List;
import org.junit.Test;

/** Hand-checked cases on a tiny vocab; the large parity run lives in tests/phone/test_java_tokenizer.py. */
public class WordPieceTokenizerTest {
    private static final List<String> VOCAB = Arrays.asList(
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "un", "##aff", "##able", "!", ",", "cafe", "中", "e");

    private final WordPieceTokenizer tok = new WordPieceTokenizer(VOCAB, true, null, true, 8, null);

    @Test
    public void lowercasesStripsAccentsAndSplitsPunctuation() {
        assertEquals(Arrays.asList("hello", ",", "world", "!"), tok.tokenize("HeLLo,  WORLD!"));
        assertEquals(Arrays.asList("cafe"), tok.tokenize("Café"));
    }

    @Test
    public void wordPieceGreedyAndUnknown() {
        assertEquals(Arrays.asList("un", "##aff", "##able"), tok.tokenize("unaffable"));
        assertEquals(Arrays.asList("[UNK]"), tok.tokenize("unaffablex"));
    }

    @Test
    public void specialTokensWrittenLiterallyAreKeptCaseSensitive() {
        // "[sep]" is not special (case-sensitive): "[", "sep", "]" are each unknown here.
        assertArrayEquals(new int[] {2, 5, 3, 6, 1, 1, 1, 3}, tok.encode("hello[SEP]world[sep]"));
    }

    @Test
    public void cjkEmojiAndControlCharacters() {
        assertEquals(Arrays.asList("中", "e", "[UNK]"), tok.tokenize("中e\u0000\u200b \uD83D\uDE00"));
    }

    @Test
    public void truncatesToMaxLengthWithClsAndSep() {
        int[] ids = tok.encode("hello hello hello hello hello hello hello hello hello");
        assertEquals(8, ids.length);
        assertEquals(2, ids[0]);
        assertEquals(3, ids[7]);
        WordPieceTokenizer.Encoding enc = tok.encodeForModel("hello", 6);
        assertArrayEquals(new long[] {2, 5, 3, 0, 0, 0}, enc.inputIds);
        assertArrayEquals(new long[] {1, 1, 1, 0, 0, 0}, enc.attentionMask);
    }
}
