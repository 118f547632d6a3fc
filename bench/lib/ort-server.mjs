#!/usr/bin/env node
// The classification server a Node developer writes today with onnxruntime-node: node:http,
// the model's tokenizer, one session.run per request (batch of one), the [CLS] row through a
// linear head, softmax. The serving benchmark's peer (bench/serve.mjs); same routes and
// body shapes as `er serve` so the same load generator drives both.
//
//   node bench/lib/ort-server.mjs --onnx FILE --tokenizer DIR --labels 3 --threads 2 --port P [--max-length 256]
import { createRequire } from 'module';
import * as http from 'http';
import * as path from 'path';
import { flagReader } from './cli.mjs';

const require = createRequire(import.meta.url);
const ort = require('onnxruntime-node');
const { Tokenizer } = require('@anush008/tokenizers');

const flag = flagReader(process.argv.slice(2));
const onnx = flag('onnx');
const tokDir = flag('tokenizer');
const numLabels = Number(flag('labels', '3'));
const threads = Number(flag('threads', '2'));
const port = Number(flag('port', '0'));
const maxLength = Number(flag('max-length', '256'));

const session = await ort.InferenceSession.create(onnx, {
  executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
});
const tok = Tokenizer.fromFile(path.join(tokDir, 'tokenizer.json'));
tok.setTruncation(maxLength);
tok.disablePadding();
// a fixed head (the weights do not change the cost): numLabels x H
let head = null;

function softmax(z) {
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

async function predict(text) {
  const enc = await tok.encode(text);
  const ids = enc.getIds(), mask = enc.getAttentionMask(), types = enc.getTypeIds();
  const T = ids.length;
  const i64 = (a) => new ort.Tensor('int64', BigInt64Array.from(a, (x) => BigInt(x)), [1, T]);
  const out = await session.run({ input_ids: i64(ids), attention_mask: i64(mask), token_type_ids: i64(types) });
  const h = out.last_hidden_state.data; // (1, T, H): the [CLS] row is the first H values
  const H = out.last_hidden_state.dims[2];
  if (!head) head = Float32Array.from({ length: numLabels * H }, (_, i) => Math.sin(i) * 0.02);
  const z = [];
  for (let l = 0; l < numLabels; l++) {
    let s = 0;
    for (let j = 0; j < H; j++) s += head[l * H + j] * h[j];
    z.push(s);
  }
  const p = softmax(z);
  const best = p.indexOf(Math.max(...p));
  return { label: String(best), probabilities: p };
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    return;
  }
  if (req.method !== 'POST' || req.url !== '/v1/predict') {
    res.writeHead(404).end();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    try {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      const predictions = [];
      for (const x of body.inputs) predictions.push(await predict(x.text));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ predictions }));
    } catch (e) {
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: String(e.message) }));
    }
  });
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${server.address().port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
