// `er serve`: two tiny tasks trained on the tiny BERT fixture, served in-process
// (createServer on port 0) and once as the real CLI in a child process (for SIGTERM).
// Predictions must equal session.predict called directly; every bad request gets its
// 400 naming the field; /metrics is valid Prometheus text and moves; a full queue is a
// 429; shutdown answers every accepted request. Loopback only, bounded loops only.
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceSession } from '../../src/infer/session';
import { createServer, RequestLog, Server, ServedSession } from '../../src/serve/server';
import { trainTask } from '../../src/tasks/runner';
import { FIXTURES, ROOT } from '../helpers/fixtures';
import { writeClassification, writeNer } from '../helpers/taskdata';

const CLI = path.join(ROOT, 'lib', 'cli', 'main.js');
const MODEL = path.join(FIXTURES, 'tiny-bert');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-serve-'));
const TOPICS = path.join(tmp, 'topics');
const ENTS = path.join(tmp, 'ents');
const MAX_INPUTS = 4;
const MAX_CHARS = 300;

type Json = Record<string, unknown>;
async function post(url: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<{ status: number; json: Json }> {
  const r = await fetch(`${url}/v1/predict`, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: r.status, json: (await r.json()) as Json };
}

/** Parses Prometheus text format strictly; returns sample values keyed by `name{k="v",...}` (labels sorted). */
function parseProm(text: string): Map<string, number> {
  const out = new Map<string, number>();
  const types = new Map<string, string>();
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  expect(text.endsWith('\n')).toBe(true);
  for (const line of text.slice(0, -1).split('\n')) {
    const c = new RegExp(`^# (HELP|TYPE) (${NAME}) (.*)$`).exec(line);
    if (c) {
      if (c[1] === 'TYPE') {
        expect(['counter', 'gauge', 'histogram', 'summary', 'untyped'], line).toContain(c[3]);
        expect(types.has(c[2]), `${c[2]} declared twice`).toBe(false);
        types.set(c[2], c[3]);
      }
      continue;
    }
    const m = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`).exec(line);
    expect(m, `not a sample line: ${line}`).not.toBeNull();
    const [, name, labelText = '', value] = m!;
    const labels: [string, string][] = [];
    const rest = labelText.replace(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g, (_, k: string, v: string) => { labels.push([k, v]); return ''; });
    expect(rest, `bad labels in ${line}`).toBe('');
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    expect(types.has(family), `${name} has no TYPE line before it`).toBe(true);
    const v = value === '+Inf' ? Infinity : Number(value);
    expect(Number.isNaN(v), line).toBe(false);
    out.set(`${name}{${labels.sort().map(([k, x]) => `${k}="${x}"`).join(',')}}`, v);
  }
  // histograms: buckets cumulative, +Inf bucket equals _count
  for (const [fam, t] of types) {
    if (t !== 'histogram') continue;
    const series = new Map<string, number[]>();
    for (const [k, v] of out) {
      if (!k.startsWith(`${fam}_bucket{`)) continue;
      const base = k.replace(`${fam}_bucket`, '').replace(/le="[^"]*",?/, '').replace(/,\}$/, '}');
      series.set(base, [...(series.get(base) ?? []), v]);
      if (k.includes('le="+Inf"')) expect(v, k).toBe(out.get(`${fam}_count${base}`));
    }
    for (const [, vs] of series) for (let i = 1; i < vs.length; i++) expect(vs[i]).toBeGreaterThanOrEqual(vs[i - 1]);
  }
  return out;
}

async function metrics(url: string): Promise<Map<string, number>> {
  const r = await fetch(`${url}/metrics`);
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseProm(await r.text());
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Polls `cond` every 10 ms, at most `tries` times. */
async function until(cond: () => boolean | Promise<boolean>, tries = 300): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (await cond()) return true;
    await sleep(10);
  }
  return false;
}

beforeAll(async () => {
  const c = writeClassification(tmp, 60, 1, 'c-train');
  const n = writeNer(tmp, 60, 1, 'n-train');
  const common = { model: MODEL, mode: 'reduced' as const, maxLength: 32, lr: 1e-3, epochs: 1, batchSize: 16 };
  await trainTask({ ...common, task: 'classification', train: c, store: path.join(tmp, 'c-store'), out: TOPICS });
  await trainTask({ ...common, task: 'ner', train: n, store: path.join(tmp, 'n-store'), out: ENTS });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('er serve in-process (createServer, port 0)', () => {
  let server: Server;
  let url: string;
  let direct: { topics: InferenceSession; ents: InferenceSession };
  const logs: RequestLog[] = [];

  beforeAll(async () => {
    const sessions = new Map<string, ServedSession>([['topics', await InferenceSession.open(TOPICS)], ['ents', await InferenceSession.open(ENTS)]]);
    direct = { topics: await InferenceSession.open(TOPICS), ents: await InferenceSession.open(ENTS) };
    server = createServer(sessions, { port: 0, maxInputs: MAX_INPUTS, maxTextChars: MAX_CHARS, log: (l) => logs.push(l) });
    url = await server.listen();
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });
  afterAll(async () => {
    await server?.close();
    await direct?.topics.close();
    await direct?.ents.close();
  });

  it('answers what session.predict answers, for classification and NER', async () => {
    const texts = [{ text: 'the kidney patients were on dialysis' }, { text: 'insulin and glucose in the study group' }, { text: 'heart arrhythmia', pair: 'cardiac results' }];
    const r = await post(url, { task: 'topics', inputs: texts });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    const want = (await direct.topics.predict(texts)) as { label: string; probabilities: Record<string, number> }[];
    const got = r.json.predictions as typeof want;
    expect(got).toHaveLength(3);
    got.forEach((p, i) => {
      expect(p.label).toBe(want[i].label);
      for (const [l, v] of Object.entries(want[i].probabilities)) expect(Math.abs(p.probabilities[l] - v)).toBeLessThan(1e-6);
    });
    const ner = [{ text: 'aspirin for breast cancer' }, { words: ['the', 'hepatitis', 'patients'] }];
    const rn = await post(url, { task: 'ents', inputs: ner });
    expect(rn.status, JSON.stringify(rn.json)).toBe(200);
    expect(rn.json.predictions).toEqual(JSON.parse(JSON.stringify(await direct.ents.predict(ner))));
    const empty = await post(url, { task: 'topics', inputs: [] });
    expect(empty).toEqual({ status: 200, json: { predictions: [] } });
  });

  const long = 'x'.repeat(MAX_CHARS + 1);
  const bad: [string, unknown, RegExp, Record<string, string>?][] = [
    ['bad JSON', '{"task": "topics", "inputs": [', /^body: not valid JSON/],
    ['an empty body', '', /^body: empty/],
    ['a body that is not an object', '[1, 2]', /^body: must be an object/],
    ['an unknown task', { task: 'nope', inputs: [{ text: 'a' }] }, /^task: unknown task "nope"; this server has "topics", "ents"/],
    ['a missing task', { inputs: [{ text: 'a' }] }, /^task: required/],
    ['a task that is not a string', { task: 1, inputs: [{ text: 'a' }] }, /^task: must be a string/],
    ['missing inputs', { task: 'topics' }, /^inputs: required/],
    ['inputs that are not an array', { task: 'topics', inputs: { text: 'a' } }, /^inputs: must be an array/],
    ['an input that is not an object', { task: 'topics', inputs: ['a'] }, /^inputs\[0\]: must be an object/],
    ['a missing text', { task: 'topics', inputs: [{ text: 'a' }, { pair: 'b' }] }, /^inputs\[1\]\.text: required/],
    ['a missing text (NER)', { task: 'ents', inputs: [{}] }, /^inputs\[0\]\.text: required/],
    ['a text that is not a string', { task: 'topics', inputs: [{ text: 'a' }, { text: 5 }] }, /^inputs\[1\]\.text: must be a string/],
    ['a pair that is not a string', { task: 'topics', inputs: [{ text: 'a', pair: null }] }, /^inputs\[0\]\.pair: must be a string/],
    ['words that are not strings', { task: 'ents', inputs: [{ words: ['a', 2] }] }, /^inputs\[0\]\.words\[1\]: must be a string/],
    ['words for a classification task', { task: 'topics', inputs: [{ words: ['a'] }] }, /^inputs\[0\]\.words: a classification task takes/],
    ['a pair for an NER task', { task: 'ents', inputs: [{ text: 'a', pair: 'b' }] }, /^inputs\[0\]\.pair: an NER task takes/],
    ['a misspelt field', { task: 'topics', inputs: [{ txt: 'a' }] }, /^inputs\[0\]\.txt: unknown field/],
    ['an unknown top-level field', { task: 'topics', inputs: [], extra: 1 }, /^extra: unknown field/],
    ['too many inputs', { task: 'topics', inputs: Array.from({ length: MAX_INPUTS + 1 }, () => ({ text: 'a' })) }, /^inputs: at most 4 inputs per request \(--max-inputs\)/],
    ['a text longer than --max-text-chars', { task: 'topics', inputs: [{ text: 'a' }, { text: long }] }, /^inputs\[1\]\.text: longer than 300 characters \(--max-text-chars\)/],
    ['a pair longer than --max-text-chars', { task: 'topics', inputs: [{ text: 'a', pair: long }] }, /^inputs\[0\]\.pair: longer than 300 characters/],
    ['NER words longer than --max-text-chars together', { task: 'ents', inputs: [{ words: Array.from({ length: 100 }, () => 'abcd') }] }, /^inputs\[0\]\.words: longer than 300 characters together/],
  ];
  for (const [what, body, msg] of bad) {
    it(`400 for ${what}, naming the field`, async () => {
      const r = await post(url, body);
      expect(r.status, JSON.stringify(r.json)).toBe(400);
      expect(Object.keys(r.json)).toEqual(['error']);
      expect(r.json.error).toMatch(msg);
    });
  }

  it('415 for a body that is not JSON, 404 for an unknown route', async () => {
    const t = await post(url, 'hello', { 'content-type': 'text/plain' });
    expect(t.status).toBe(415);
    expect(t.json.error).toMatch(/^content-type: text\/plain is not supported; send application\/json/);
    for (const [method, p] of [['GET', '/nope'], ['GET', '/v1/predict'], ['POST', '/v1/predicts']]) {
      const r = await fetch(`${url}${p}`, { method });
      expect(r.status, `${method} ${p}`).toBe(404);
      expect(((await r.json()) as Json).error).toMatch(new RegExp(`^no route ${method} ${p.replace(/\//g, '\\/')}`));
    }
  });

  it('/health', async () => {
    const r = await fetch(`${url}/health`);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ status: 'ok' });
  });

  it('/metrics is Prometheus text and its counters move', async () => {
    const ok = 'er_http_requests_total{route="/v1/predict",status="200",task="topics"}';
    const bad400 = 'er_http_requests_total{route="/v1/predict",status="400",task="topics"}';
    const count = 'er_http_request_duration_seconds_count{route="/v1/predict"}';
    const before = await metrics(url);
    expect(before.get('er_http_requests_in_flight{}')).toBe(1); // this scrape
    await post(url, { task: 'topics', inputs: [{ text: 'renal dialysis' }, { text: 'obesity' }] });
    await post(url, { task: 'topics', inputs: [{ text: 5 }] });
    // the log line and the counters are written when the response has gone out; give the close event its turn
    expect(await until(async () => ((await metrics(url)).get(bad400) ?? 0) > (before.get(bad400) ?? 0))).toBe(true);
    const after = await metrics(url);
    expect(after.get(ok)).toBe((before.get(ok) ?? 0) + 1);
    expect(after.get(bad400)).toBe((before.get(bad400) ?? 0) + 1);
    expect(after.get(count)).toBeGreaterThanOrEqual((before.get(count) ?? 0) + 2);
    // the sessions' own numbers (src/infer/session.ts's metrics())
    const req = 'er_session_requests_total{task="topics"}';
    expect(after.get(req)).toBe((before.get(req) ?? 0) + 1);
    expect(after.get('er_session_inputs_total{task="topics"}')).toBe((before.get('er_session_inputs_total{task="topics"}') ?? 0) + 2);
    for (const h of ['er_session_queue_seconds', 'er_session_compute_seconds', 'er_session_batch_rows', 'er_session_batch_tokens']) {
      expect(after.get(`${h}_count{task="topics"}`), h).toBeGreaterThan(before.get(`${h}_count{task="topics"}`) ?? 0);
    }
    const rows = (m: Map<string, number>) => (m.get('er_session_cache_hits_total{task="topics"}') ?? 0) + (m.get('er_session_cache_misses_total{task="topics"}') ?? 0);
    expect(rows(after)).toBe(rows(before) + 2);
    expect(after.get('er_session_queued_inputs{task="topics"}')).toBe(0);
    expect(after.has('er_session_requests_total{task="ents"}')).toBe(true);
    // one log line per request
    const line = logs.find((l) => l.status === 200 && l.task === 'topics' && l.inputs === 2)!;
    expect(line).toMatchObject({ method: 'POST', route: '/v1/predict' });
    expect(line.totalMs).toBeGreaterThan(0);
    expect(Number.isNaN(Date.parse(line.time))).toBe(false);
    expect(line).toHaveProperty('queueMs');
    expect(line).toHaveProperty('computeMs');
    expect(logs.some((l) => l.status === 400 && l.task === 'topics')).toBe(true);
  });
});

// A session stand-in for what only the HTTP layer decides (status codes, the abort signal,
// the drain on close); the real sessions are exercised above and below.
class FakeSession implements ServedSession {
  readonly spec = { task: 'classification' as const, maxLength: 32 };
  calls = 0;
  signals: AbortSignal[] = [];
  closedAfter = -1;
  answered = 0;
  constructor(private readonly behave: (signal: AbortSignal) => Promise<unknown[]>) {}
  async predict(_inputs: unknown, opts?: { signal?: AbortSignal }): Promise<unknown[]> {
    this.calls++;
    this.signals.push(opts!.signal!);
    const r = await this.behave(opts!.signal!);
    this.answered++;
    return r;
  }
  closes = 0;
  close(): void {
    if (this.closes++ === 0) this.closedAfter = this.answered;
  }
}

const waitOrAbort = (ms: number) => (signal: AbortSignal) => new Promise<unknown[]>((resolve, reject) => {
  const t = setTimeout(() => resolve([{ label: 'x' }]), ms);
  signal.addEventListener('abort', () => { clearTimeout(t); reject(Object.assign(new Error('aborted'), { name: 'AbortError' })); });
});

describe('er serve: the HTTP layer over a stand-in session', () => {
  async function serve(fake: FakeSession, opts = {}): Promise<[Server, string]> {
    const s = createServer({ t: fake }, { port: 0, ...opts });
    return [s, await s.listen()];
  }

  it('429 on a full queue (ER_QUEUE_FULL), 500 with the message on any other failure, 400 on a TypeError', async () => {
    for (const [err, status, msg] of [
      [Object.assign(new Error('queue full: 1 requests waiting (maxQueue 1)'), { code: 'ER_QUEUE_FULL' }), 429, /^queue full/],
      [new Error('the compute thread died'), 500, /^the compute thread died$/],
      [new TypeError('input 0: a classification task takes { text, pair? }'), 400, /^inputs: input 0: /],
    ] as const) {
      const [s, url] = await serve(new FakeSession(async () => { throw err; }));
      const r = await post(url, { task: 't', inputs: [{ text: 'a' }] });
      expect(r.status).toBe(status);
      expect(r.json.error).toMatch(msg);
      await s.close();
    }
  });

  it('a client that goes away aborts its request inside the session and is counted as 499, not as an error', async () => {
    const fake = new FakeSession(waitOrAbort(10_000));
    const [s, url] = await serve(fake);
    const ac = new AbortController();
    const p = fetch(`${url}/v1/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ task: 't', inputs: [{ text: 'a' }] }), signal: ac.signal });
    expect(await until(() => fake.calls === 1)).toBe(true);
    ac.abort();
    await expect(p).rejects.toThrow();
    expect(await until(() => fake.signals[0].aborted)).toBe(true);
    const key = 'er_http_requests_total{route="/v1/predict",status="499",task="t"}';
    expect(await until(async () => (await metrics(url)).get(key) === 1)).toBe(true);
    const m = await metrics(url);
    expect([...m.keys()].filter((k) => k.startsWith('er_http_requests_total') && /status="5\d\d"/.test(k))).toEqual([]);
    await s.close();
  });

  it('--timeout-ms: a request not done in time is aborted inside the session and answered 504', async () => {
    const fake = new FakeSession(waitOrAbort(10_000));
    const [s, url] = await serve(fake, { timeoutMs: 100 });
    const r = await post(url, { task: 't', inputs: [{ text: 'a' }] });
    expect(r.status).toBe(504);
    expect(r.json.error).toMatch(/^timed out after 100 ms/);
    expect(fake.signals[0].aborted).toBe(true);
    await s.close();
  });

  it('close() answers every accepted request, refuses new ones, then closes the session', async () => {
    const fake = new FakeSession(waitOrAbort(300));
    const [s, url] = await serve(fake);
    const N = 12;
    const inflight = Array.from({ length: N }, () => post(url, { task: 't', inputs: [{ text: 'a' }] }));
    expect(await until(() => fake.calls === N)).toBe(true);
    const closed = s.close();
    const late = await fetch(`${url}/health`).then((r) => r.status, () => 'refused');
    expect([503, 'refused']).toContain(late);
    const rs = await Promise.all(inflight);
    expect(rs.map((r) => r.status)).toEqual(new Array(N).fill(200));
    await closed;
    expect(fake.closes).toBe(1);
    expect(fake.closedAfter).toBe(N);
    await s.close(); // idempotent
    expect(fake.closes).toBe(1);
  });
});

describe('er serve with a bounded queue', () => {
  it('429 when the queue is full, 200 for the rest', async () => {
    // one input may wait; the first request waits 50 ms for company, so those right behind it are refused
    const s = createServer({ topics: await InferenceSession.open(TOPICS, { maxQueue: 1, maxDelayMs: 50 }) }, { port: 0 });
    const url = await s.listen();
    try {
      const rs = await Promise.all(Array.from({ length: 24 }, (_, i) => post(url, { task: 'topics', inputs: [{ text: `the patients with renal disease were followed ${i}` }] })));
      const statuses = rs.map((r) => r.status);
      const refused = statuses.filter((x) => x === 429).length;
      expect(refused).toBeGreaterThan(0);
      expect(statuses.filter((x) => x === 200).length).toBeGreaterThan(0);
      expect(statuses.filter((x) => x !== 429 && x !== 200)).toEqual([]);
      for (const r of rs.filter((x) => x.status === 429)) expect(r.json.error).toMatch(/queue is full/);
      const key = 'er_http_requests_total{route="/v1/predict",status="429",task="topics"}';
      expect(await until(async () => (await metrics(url)).get(key) === refused)).toBe(true);
      expect((await metrics(url)).get('er_session_rejected_total{task="topics"}')).toBe(refused);
    } finally {
      await s.close();
    }
  });
});

describe('er serve as the CLI (child process)', () => {
  let child: ChildProcess | undefined;
  afterAll(() => { if (child && child.exitCode === null) child.kill('SIGKILL'); });

  it('SIGTERM while requests are in flight: every accepted request gets its 200, then exit 0', async () => {
    child = spawn(process.execPath, [CLI, 'serve', '--task', TOPICS, '--task', `ner=${ENTS}`, '--port', '0', '--max-text-chars', '2000', '--max-queue', '2048', '--log', 'json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => { out += d; });
    child.stderr!.on('data', (d) => { err += d; });
    const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
    expect(await until(() => /listening on http:\/\/\S+\n/.test(out) || child!.exitCode !== null, 3000), err).toBe(true);
    const url = /listening on (http:\/\/\S+)\n/.exec(out)?.[1];
    expect(url, err).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(out.split('\n')[0]).toBe(`listening on ${url}`);
    expect(err).toMatch(/^topics: classification/m);
    expect(err).toMatch(/^ner: ner/m);

    // enough work that the requests are still running when the signal comes
    const words = 'the patients were followed for several months and the results were recorded in the study group kidney renal'.split(' ');
    const N = 24; // 24 x 64 inputs: more than the default queue of 1024 inputs, within --max-queue 2048
    const body = (r: number) => ({ task: 'topics', inputs: Array.from({ length: 64 }, (_, i) => ({ text: Array.from({ length: 40 }, (_, j) => words[(i * 7 + j * 3 + r) % words.length]).join(' ') + ` ${r}-${i}` })) });
    let sigtermAt = Infinity;
    const reqs = Array.from({ length: N }, (_, r) => post(url!, body(r)).then((x) => ({ ...x, at: performance.now() })));
    // every request has arrived (counted in flight; the scrape itself is one more)
    const accepted = await until(async () => ((await metrics(url!)).get('er_http_requests_in_flight{}') ?? 0) >= N + 1, 500);
    expect(accepted).toBe(true);
    sigtermAt = performance.now();
    child.kill('SIGTERM');
    const rs = await Promise.all(reqs);
    expect(rs.map((r) => r.status)).toEqual(new Array(N).fill(200));
    for (const r of rs) expect(r.json.predictions).toHaveLength(64);
    // the signal really came while they were in flight
    expect(rs.filter((r) => r.at > sigtermAt).length).toBeGreaterThan(0);
    expect(await exited).toBe(0);
    expect(err).toMatch(/SIGTERM: no new requests; finishing the accepted ones/);
    expect(err).toMatch(/er serve: closed/);
    // one JSON log line per request
    const lines = out.trim().split('\n').slice(1).map((l) => JSON.parse(l) as RequestLog);
    expect(lines.filter((l) => l.route === '/v1/predict' && l.status === 200 && l.task === 'topics' && l.inputs === 64)).toHaveLength(N);
  });

  it('refuses a bad flag or a task name given twice, naming it', async () => {
    const run = (...args: string[]) => new Promise<{ code: number | null; err: string }>((resolve) => {
      const c = spawn(process.execPath, [CLI, 'serve', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      let e = '';
      c.stderr!.on('data', (d) => { e += d; });
      const t = setTimeout(() => c.kill('SIGKILL'), 20_000); // one that starts serving instead of refusing
      c.once('exit', (code) => { clearTimeout(t); resolve({ code, err: e }); });
    });
    const dup = await run('--task', TOPICS, '--task', `topics=${ENTS}`, '--port', '0');
    expect(dup.code).toBe(1);
    expect(dup.err).toMatch(/--task topics=.*: the name "topics" is already taken/);
    const port = await run('--task', TOPICS, '--port', '70000');
    expect(port.code).toBe(1);
    expect(port.err).toMatch(/--port must be an integer in 0\.\.65535, got "70000"/);
    const dev = await run('--task', TOPICS, '--port', '0', '--device', 'gpu');
    expect(dev.code).toBe(1);
    expect(dev.err).toMatch(/--device must be cpu, cuda or auto, got "gpu"/);
    const prec = await run('--task', TOPICS, '--port', '0', '--gpu-precision', 'fp8');
    expect(prec.code).toBe(1);
    expect(prec.err).toMatch(/--gpu-precision must be fp32, bf16 or fp16, got "fp8"/);
    const none = await run('--port', '0');
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/give at least one --task DIR/);
  });
});
