// Run an .onnx/.ort model in onnxruntime-node (an independent runtime) on the batches given.
// usage: node ort_node_parity.js request.json response.json
//   request:  {"model": path, "batches": [{"input_ids": {"dims": [b, s], "data": [...]}, ...}, ...]}
//   response: {"ort_node_version": str, "outputs": [{"dims": [...], "data": [...]}, ...]}
"use strict";
const fs = require("fs");
const ort = require("onnxruntime-node");

async function main() {
  const [reqPath, resPath] = process.argv.slice(2);
  const req = JSON.parse(fs.readFileSync(reqPath, "utf8"));
  const session = await ort.InferenceSession.create(req.model, { intraOpNumThreads: 1, executionProviders: ["cpu"] });
  const outputs = [];
  for (const batch of req.batches) {
    const feeds = {};
    for (const name of session.inputNames) {
      const t = batch[name];
      if (!t) throw new Error(`request has no input '${name}'`);
      feeds[name] = new ort.Tensor("int64", BigInt64Array.from(t.data.map(BigInt)), t.dims);
    }
    const result = await session.run(feeds);
    const out = result[session.outputNames[0]];
    outputs.push({ dims: out.dims, data: Array.from(out.data) });
  }
  let version = "unknown";
  try { version = require("onnxruntime-node/package.json").version; } catch (e) { /* optional */ }
  fs.writeFileSync(resPath, JSON.stringify({ ort_node_version: version, outputs }));
}

main().catch((e) => { console.error(String(e && e.message || e)); process.exit(1); });
