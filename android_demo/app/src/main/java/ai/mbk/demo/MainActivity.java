package ai.mbk.demo;

import android.app.Activity;
import android.content.Intent;
import android.os.Bundle;
import android.util.Log;
import android.widget.Button;
import android.widget.EditText;
import android.widget.LinearLayout;
import android.widget.TextView;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import org.json.JSONObject;

/**
 * Demo: type a text, see label, confidence and latency; the golden self-test runs at start.
 *
 * <p>Benchmark mode (used by {@code mbk device-bench}):
 * <pre>
 * adb shell am start -W -S -n ai.mbk.demo/.MainActivity --es mode bench --ei warmup 10 --ei runs 50 \
 *     --es text "a wonderful film" [--es bundle_dir /sdcard/Android/data/ai.mbk.demo/files/bundle]
 * </pre>
 * logs exactly one line {@code MBK_BENCH: {"p50_ms":..,"p90_ms":..,"model_sha256":..}} (or {"error":..}).
 */
public class MainActivity extends Activity {
    static final String TAG = "MBK";
    static final String BENCH_TAG = "MBK_BENCH";
    private BundleModel model;
    private TextView status;

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        LinearLayout root = new LinearLayout(this);
        root.setOrientation(LinearLayout.VERTICAL);
        root.setPadding(32, 32, 32, 32);
        EditText input = new EditText(this);
        input.setHint("Type a review");
        Button go = new Button(this);
        go.setText("Classify");
        status = new TextView(this);
        root.addView(input);
        root.addView(go);
        root.addView(status);
        setContentView(root);

        Intent intent = getIntent();
        String bundleDir = intent.getStringExtra("bundle_dir");
        boolean bench = "bench".equals(intent.getStringExtra("mode"));
        new Thread(() -> {
            try {
                model = new BundleModel(bundleDir == null ? this::readAsset : name -> readFile(new File(bundleDir, name)));
                String selfTest = model.selfTest();
                Log.i(TAG, selfTest);
                if (bench) {
                    String text = intent.getStringExtra("text");
                    JSONObject r = model.benchmark(text == null ? "a wonderful, moving film" : text,
                            intent.getIntExtra("warmup", 10), intent.getIntExtra("runs", 50));
                    r.put("self_test", selfTest.startsWith("self-test OK"));
                    Log.i(BENCH_TAG, r.toString());
                    show("benchmark: " + r.toString(2));
                } else {
                    show(selfTest + "\nmodel " + model.modelSha256.substring(0, 12));
                }
            } catch (Exception e) {
                Log.e(TAG, "bundle failed", e);
                if (bench) {
                    Log.i(BENCH_TAG, "{\"error\": " + JSONObject.quote(e.getClass().getSimpleName() + ": " + e.getMessage()) + "}");
                }
                show("Error: " + e.getMessage());
            }
        }).start();

        go.setOnClickListener(v -> {
            String text = input.getText().toString();
            new Thread(() -> {
                try {
                    BundleModel.Prediction p = model.predict(text);
                    show(String.format("%s (%.1f%%)\n%.2f ms, %d tokens", p.label, 100 * p.confidence, p.millis, p.tokens));
                } catch (Exception e) {
                    show("Error: " + e.getMessage());
                }
            }).start();
        });
    }

    private void show(String msg) {
        runOnUiThread(() -> status.setText(msg));
    }

    private byte[] readAsset(String name) throws IOException {
        try (InputStream in = getAssets().open("bundle/" + name)) {
            return readAll(in);
        }
    }

    private static byte[] readFile(File f) throws IOException {
        try (InputStream in = new FileInputStream(f)) {
            return readAll(in);
        }
    }

    private static byte[] readAll(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buf = new byte[1 << 16];
        int n;
        while ((n = in.read(buf)) > 0) out.write(buf, 0, n);
        return out.toByteArray();
    }
}
