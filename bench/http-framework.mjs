// fastify vs node:http for `er serve`'s HTTP layer: requests/s of a trivial route
// (GET /health -> {"status":"ok"}) and of a small JSON POST (parsed and checked; fastify
// with its JSON schema, node:http by hand), each server in its own process on loopback,
// driven by autocannon for a bounded time. Usage: node bench/http-framework.mjs [seconds=5] [connections=32]
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';

const seconds = Number(process.argv[2] ?? 5);
const connections = Number(process.argv[3] ?? 32);

if (process.env.ER_BENCH_SERVER) {
  const kind = process.env.ER_BENCH_SERVER;
  const schema = { type: 'object', required: ['task', 'inputs'], additionalProperties: false, properties: { task: { type: 'string' }, inputs: { type: 'array', maxItems: 64, items: { type: 'object', additionalProperties: false, properties: { text: { type: 'string', maxLength: 100000 } } } } } };
  let address;
  if (kind === 'fastify') {
    const { default: Fastify } = await import('fastify');
    const app = Fastify({ logger: false, ajv: { customOptions: { coerceTypes: false } } });
    app.get('/health', async () => ({ status: 'ok' }));
    app.post('/v1/predict', { schema: { body: schema } }, async (req) => ({ predictions: req.body.inputs.map(() => ({ label: 'x' })) }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    address = app.server.address();
  } else {
    const http = await import('node:http');
    const server = http.createServer((req, res) => {
      const send = (status, obj) => { const b = JSON.stringify(obj); res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(b) }); res.end(b); };
      if (req.method === 'GET' && req.url === '/health') return send(200, { status: 'ok' });
      if (req.method === 'POST' && req.url === '/v1/predict') {
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => {
          let body;
          try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch (e) { return send(400, { error: `body: not valid JSON (${e.message})` }); }
          if (typeof body !== 'object' || body === null || Array.isArray(body)) return send(400, { error: 'body: must be an object' });
          if (typeof body.task !== 'string') return send(400, { error: 'task: must be a string' });
          if (!Array.isArray(body.inputs) || body.inputs.length > 64) return send(400, { error: 'inputs: must be an array of at most 64' });
          for (const [i, x] of body.inputs.entries()) if (typeof x !== 'object' || x === null || typeof x.text !== 'string' || x.text.length > 100000) return send(400, { error: `inputs[${i}].text: must be a string` });
          send(200, { predictions: body.inputs.map(() => ({ label: 'x' })) });
        });
        return;
      }
      send(404, { error: 'no route' });
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    address = server.address();
  }
  process.send({ port: address.port });
} else {
  const body = JSON.stringify({ task: 'scicite', inputs: [{ text: 'The results of the study were consistent with previous reports on renal function in diabetic patients.' }] });
  const rows = [];
  for (const kind of ['node:http', 'fastify']) {
    const child = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, ER_BENCH_SERVER: kind } });
    const { port } = await new Promise((r) => child.once('message', r));
    for (const [route, path, opts] of [['GET /health', '/health', {}], ['POST /v1/predict', '/v1/predict', { method: 'POST', headers: { 'content-type': 'application/json' }, body }]]) {
      const url = `http://127.0.0.1:${port}${path}`;
      await autocannon({ url, connections, duration: 1, ...opts }); // warm-up
      const r = await autocannon({ url, connections, duration: seconds, ...opts });
      if (r.non2xx || r.errors) throw new Error(`${kind} ${route}: ${r.non2xx} non-2xx, ${r.errors} errors`);
      rows.push({ kind, route, rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99 });
    }
    child.kill();
  }
  console.log(`autocannon, ${connections} connections, ${seconds} s per run, loopback, Node ${process.version}`);
  console.log('| server | route | requests/s | p50 ms | p99 ms |\n|---|---|---:|---:|---:|');
  for (const r of rows) console.log(`| ${r.kind} | ${r.route} | ${Math.round(r.rps)} | ${r.p50} | ${r.p99} |`);
  for (const route of ['GET /health', 'POST /v1/predict']) {
    const [a, b] = ['node:http', 'fastify'].map((k) => rows.find((r) => r.kind === k && r.route === route).rps);
    console.log(`${route}: fastify / node:http = ${(b / a).toFixed(2)}`);
  }
}
