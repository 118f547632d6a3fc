/**
 * `er serve`'s HTTP server, on fastify: routes, request validation (a JSON schema),
 * errors as `{"error": "..."}` naming the field, Prometheus metrics, one log line per
 * request and a graceful close. Thin by design: every prediction, batch and cache
 * decision comes from the sessions of `src/infer`; this file only speaks HTTP.
 *
 *   POST /v1/predict  {"task": "scicite", "inputs": [{"text": "..."}]}  ->  {"predictions": [...]}
 *   GET  /health      ->  {"status": "ok"}
 *   GET  /metrics     ->  Prometheus text format
 */
import { monitorEventLoopDelay } from 'perf_hooks';
import Fastify, { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AddressInfo } from 'net';
import type { PredictInput } from '../infer/session';
import { Histogram } from '../infer/histogram';
import { LATENCY_BOUNDS_MS, PromWriter, SessionMetrics, writeSessionMetrics } from './metrics';

/** Per-request timings a session may report through `onTiming` (optional; logged as null when absent). */
export interface RequestTiming {
  queueMs?: number;
  computeMs?: number;
}

/** What the server needs of a session: `InferenceSession` (src/infer/session.ts) is one. */
export interface ServedSession {
  readonly spec: { task: 'classification' | 'ner'; maxLength?: number };
  predict(inputs: readonly PredictInput[], opts?: { signal?: AbortSignal; onTiming?: (t: RequestTiming) => void }): Promise<unknown[]>;
  metrics?(): Partial<SessionMetrics>;
  close(): void | Promise<void>;
}

/** What the server needs of an embedding service: `EmbeddingSession` (src/infer/embed.ts) is one. */
export interface ServedEmbedder {
  embed(texts: readonly string[], opts?: { normalize?: boolean; refuseLong?: boolean; signal?: AbortSignal; onTiming?: (t: RequestTiming) => void }): Promise<Float32Array[]>;
  metrics?(): Partial<SessionMetrics>;
  close(): void | Promise<void>;
}

/** One line per request (`er serve --log json`). */
export interface RequestLog {
  time: string;
  method: string;
  route: string;
  task: string | null;
  inputs: number | null;
  status: number;
  queueMs: number | null;
  computeMs: number | null;
  totalMs: number;
  error?: string;
}

/** What `createServer` serves and how: sessions by name, host, port, limits, request logging. */
export interface ServerOptions {
  /** default 8080; 0 picks a free port */
  port?: number;
  /** default 127.0.0.1 */
  host?: string;
  /** inputs per request (default 64) */
  maxInputs?: number;
  /** characters per text, pair or NER sentence (default 100000) */
  maxTextChars?: number;
  /** a request not answered within this many ms is aborted with 504 (default: no limit) */
  timeoutMs?: number;
  /** largest request body in bytes (default: enough for maxInputs texts of maxTextChars) */
  bodyLimit?: number;
  /** called once per request, after its response was sent or its client went away */
  log?: (line: RequestLog) => void;
  /** serves POST /embed (text-embeddings-inference's request and response shapes) */
  embedder?: ServedEmbedder;
}

/** A running HTTP server (`createServer`): its address, and `close()` to drain and stop. */
export interface Server {
  app: FastifyInstance;
  /** Starts listening; resolves to `http://HOST:PORT` with the bound port. */
  listen(): Promise<string>;
  /** Stops accepting, answers every accepted request, then closes every session. Idempotent. */
  close(): Promise<void>;
}

/** `er serve`'s defaults (host, port, body and queue limits). */
export const SERVE_DEFAULTS = { port: 8080, host: '127.0.0.1', maxInputs: 64, maxTextChars: 100_000 } as const;

/** The event-loop lag histogram: a timer every LOOP_LAG_TICK_MS, and its lateness buckets (ms). */
const LOOP_LAG_TICK_MS = 10;
const LOOP_LAG_BOUNDS_MS = [0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 100, 200, 500, 1000];

/** HTTP status of a request whose client closed the connection before the answer (nginx's convention). */
const CLIENT_CLOSED = 499;

interface RequestState {
  t0: number;
  task: string | null;
  inputs: number | null;
  timing: RequestTiming;
  error?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    er: RequestState;
  }
}

/** ajv's error path (`/inputs/0/text`) as the user wrote it (`inputs[0].text`). */
function fieldName(instancePath: string, dataVar: string, child?: string): string {
  const parts = instancePath.split('/').filter(Boolean);
  if (child !== undefined) parts.push(child);
  if (!parts.length) return dataVar;
  return parts.map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

interface AjvError { instancePath: string; keyword: string; params: Record<string, unknown>; message?: string }

function describeSchemaError(e: AjvError, dataVar: string, o: { maxInputs: number; maxTextChars: number }): string {
  switch (e.keyword) {
    case 'required':
      return `${fieldName(e.instancePath, dataVar, String(e.params.missingProperty))}: required`;
    case 'additionalProperties':
      return `${fieldName(e.instancePath, dataVar, String(e.params.additionalProperty))}: unknown field` +
        (/^\/inputs\/\d+$/.test(e.instancePath) ? ' (an input takes "text", "pair" or "words")' : ' (a request takes "task" and "inputs")');
    case 'type':
      return `${fieldName(e.instancePath, dataVar)}: must be ${e.params.type === 'array' ? 'an array' : e.params.type === 'object' ? 'an object' : `a ${e.params.type}`}`;
    case 'maxItems':
      return e.instancePath === '/inputs'
        ? `inputs: at most ${o.maxInputs} inputs per request (--max-inputs)`
        : `${fieldName(e.instancePath, dataVar)}: at most ${e.params.limit} items`;
    case 'maxLength':
      return `${fieldName(e.instancePath, dataVar)}: longer than ${o.maxTextChars} characters (--max-text-chars)`;
    default:
      return `${fieldName(e.instancePath, dataVar)}: ${e.message ?? e.keyword}`;
  }
}

function isAbort(err: unknown): boolean {
  return (err as Error)?.name === 'AbortError' || (err as Error)?.name === 'TimeoutError';
}

class HttpError extends Error {
  constructor(readonly statusCode: number, message: string) {
    super(message);
  }
}

/**
 * Builds the server over already opened sessions, keyed by task name. The server owns
 * them from now on: `close()` closes them.
 */
export function createServer(tasks: Map<string, ServedSession> | Record<string, ServedSession>, options: ServerOptions = {}): Server {
  const sessions = new Map(tasks instanceof Map ? tasks : Object.entries(tasks));
  const embedder = options.embedder;
  if (!sessions.size && !embedder) throw new Error('createServer: no tasks and no embedding model to serve');
  const o = {
    port: options.port ?? SERVE_DEFAULTS.port,
    host: options.host ?? SERVE_DEFAULTS.host,
    maxInputs: options.maxInputs ?? SERVE_DEFAULTS.maxInputs,
    maxTextChars: options.maxTextChars ?? SERVE_DEFAULTS.maxTextChars,
  };
  for (const [k, v] of Object.entries({ maxInputs: o.maxInputs, maxTextChars: o.maxTextChars })) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`createServer: ${k} must be an integer >= 1, got ${v}`);
  }
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) throw new RangeError(`createServer: port must be an integer in 0..65535, got ${o.port}`);
  if (options.timeoutMs !== undefined && !(options.timeoutMs > 0)) throw new RangeError(`createServer: timeoutMs must be > 0, got ${options.timeoutMs}`);
  // a text and a pair of maxTextChars each per input, up to 6 bytes a character once JSON-escaped, plus slack
  const bodyLimit = options.bodyLimit ?? Math.min(2 ** 31 - 1, o.maxInputs * o.maxTextChars * 2 * 6 + (1 << 20));
  const names = [...sessions.keys()];

  const app = Fastify({
    logger: false,
    bodyLimit,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // types are checked, never coerced: {"text": 5} is a 400, not the text "5"
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
    schemaErrorFormatter: (errors, dataVar) => new Error(describeSchemaError(errors[0] as AjvError, dataVar, o)),
  });

  // the event loop's delay while the server runs (what a blocking call would show)
  const loopDelay = monitorEventLoopDelay({ resolution: 5 });
  loopDelay.enable();
  // and as a histogram (scrapers take rates and windows from its counts): how late a
  // 10 ms timer fires
  const loopLag = new Histogram(LOOP_LAG_BOUNDS_MS);
  let lagDue = performance.now() + LOOP_LAG_TICK_MS;
  const lagTimer = setInterval(() => {
    const now = performance.now();
    loopLag.observe(Math.max(0, now - lagDue));
    lagDue = now + LOOP_LAG_TICK_MS;
  }, LOOP_LAG_TICK_MS);
  lagTimer.unref();

  // the HTTP layer's own metrics
  const httpCounts = new Map<string, { labels: Record<string, string>; value: number }>();
  const httpLatency = new Map<string, Histogram>();
  let inFlight = 0;
  let closing = false;
  let drained: (() => void) | undefined;

  function record(request: FastifyRequest, reply: FastifyReply): void {
    const st = request.er;
    // a request refused by the schema still names its task when it named a served one
    const asked = (request.body as { task?: unknown } | undefined)?.task;
    if (st.task === null && typeof asked === 'string' && sessions.has(asked)) st.task = asked;
    const status = reply.raw.writableFinished ? reply.statusCode : CLIENT_CLOSED;
    const route = request.routeOptions.url ?? 'unmatched';
    const totalMs = performance.now() - st.t0;
    const key = `${route}\0${st.task ?? ''}\0${status}`;
    const c = httpCounts.get(key) ?? { labels: { route, task: st.task ?? '', status: String(status) }, value: 0 };
    c.value++;
    httpCounts.set(key, c);
    let h = httpLatency.get(route);
    if (!h) httpLatency.set(route, (h = new Histogram(LATENCY_BOUNDS_MS)));
    h.observe(totalMs);
    options.log?.({
      time: new Date().toISOString(), method: request.method, route: request.routeOptions.url ?? request.url, task: st.task, inputs: st.inputs, status,
      queueMs: st.timing.queueMs ?? null, computeMs: st.timing.computeMs ?? null, totalMs: Math.round(totalMs * 1000) / 1000,
      ...(st.error !== undefined ? { error: st.error } : {}),
    });
  }

  // JSON only: a text/plain body is a 415, not a string that fails the schema
  app.removeContentTypeParser('text/plain');
  app.decorateRequest('er', null as unknown as RequestState);
  app.addHook('onRequest', async (request, reply) => {
    request.er = { t0: performance.now(), task: null, inputs: null, timing: {} };
    inFlight++;
    reply.raw.once('close', () => {
      inFlight--;
      record(request, reply);
      if (inFlight === 0) drained?.();
    });
  });
  app.addHook('onSend', async (_request, reply) => {
    // while draining, ask keep-alive clients to go elsewhere next time
    if (closing) reply.header('connection', 'close');
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string; validation?: unknown }, request, reply) => {
    let status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    let message = err.message;
    if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || (status === 400 && err instanceof SyntaxError)) message = `body: not valid JSON (${err.message})`;
    else if (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') message = 'body: empty; send a JSON object {"task": ..., "inputs": [...]}';
    else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') message = `body: larger than ${bodyLimit} bytes`;
    else if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') { status = 415; message = `content-type: ${request.headers['content-type'] ?? 'none'} is not supported; send application/json`; }
    if (status >= 500) request.er.error = message;
    reply.code(status).send({ error: message });
  });
  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send({ error: `no route ${request.method} ${request.url.split('?')[0]}; routes: ${embedder ? 'POST /embed, ' : ''}POST /v1/predict, GET /health, GET /metrics` });
  });

  /**
   * Runs a request's work with a signal that the client going away (or the deadline)
   * aborts inside the session, and maps what the session throws to HTTP: a full queue
   * is 429, an abort 499 or 504, then `mapError`'s own cases.
   */
  async function served(
    request: FastifyRequest, reply: FastifyReply,
    work: (opts: { signal: AbortSignal; onTiming: (t: RequestTiming) => void }) => Promise<unknown>,
    mapError: (e: Error) => HttpError | null,
  ): Promise<unknown> {
    const gone = new AbortController();
    const onClose = () => { if (!reply.raw.writableFinished) gone.abort(); };
    reply.raw.once('close', onClose);
    const signal = options.timeoutMs ? AbortSignal.any([gone.signal, AbortSignal.timeout(options.timeoutMs)]) : gone.signal;
    try {
      return await work({ signal, onTiming: (t) => { request.er.timing = t; } });
    } catch (err) {
      const e = err as Error & { code?: string };
      if (e.code === 'ER_QUEUE_FULL') {
        reply.header('retry-after', '1');
        throw new HttpError(429, e.message);
      }
      if (isAbort(e) || signal.aborted) {
        if (gone.signal.aborted) throw new HttpError(CLIENT_CLOSED, 'client closed the connection');
        throw new HttpError(504, `timed out after ${options.timeoutMs} ms`);
      }
      throw mapError(e) ?? e;
    } finally {
      reply.raw.off('close', onClose);
    }
  }

  const str = { type: 'string', maxLength: o.maxTextChars };
  const predictSchema = {
    type: 'object',
    required: ['task', 'inputs'],
    additionalProperties: false,
    properties: {
      task: { type: 'string' },
      inputs: {
        type: 'array',
        maxItems: o.maxInputs,
        items: { type: 'object', additionalProperties: false, properties: { text: str, pair: str, words: { type: 'array', items: str } } },
      },
    },
  };

  app.post<{ Body: { task: string; inputs: Record<string, unknown>[] } }>('/v1/predict', { schema: { body: predictSchema } }, async (request, reply) => {
    const { task, inputs } = request.body;
    const session = sessions.get(task);
    if (!session) throw new HttpError(400, `task: unknown task ${JSON.stringify(task)}; this server has ${names.map((n) => JSON.stringify(n)).join(', ')}`);
    request.er.task = task;
    request.er.inputs = inputs.length;
    checkInputs(session.spec.task, inputs, o.maxTextChars);
    return served(request, reply, async (opts) => reply.send({ predictions: await session.predict(inputs as unknown as PredictInput[], opts) }), (e) => {
      if (e instanceof TypeError) return new HttpError(400, `inputs: ${e.message}`);
      return null;
    });
  });

  // text-embeddings-inference's /embed: {"inputs": "..." | ["...", ...], "normalize": true, "truncate": false}
  // -> [[...], ...]; a text longer than the model takes is a 413 unless truncate is true;
  // errors are {"error", "error_type"} as that server sends them
  const embedSchema = {
    type: 'object',
    required: ['inputs'],
    properties: {
      inputs: { oneOf: [str, { type: 'array', minItems: 1, maxItems: o.maxInputs, items: str }] },
      normalize: { type: 'boolean' },
      truncate: { type: 'boolean' },
    },
  };
  if (embedder) {
    app.post<{ Body: { inputs: string | string[]; normalize?: boolean; truncate?: boolean } }>('/embed', {
      schema: { body: embedSchema },
      errorHandler: (err: Error & { statusCode?: number; code?: string }, request, reply) => {
        const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
        let message = err.message;
        if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY') message = `body: not valid JSON (${err.message})`;
        if (status >= 500) request.er.error = message;
        const type = status === 429 ? 'Overloaded' : status === 504 || status === CLIENT_CLOSED ? 'Backend' : status < 500 ? 'Validation' : 'Backend';
        reply.code(status).send({ error: message, error_type: type });
      },
    }, async (request, reply) => {
      const { inputs, normalize, truncate } = request.body;
      const texts = typeof inputs === 'string' ? [inputs] : inputs;
      request.er.task = 'embed';
      request.er.inputs = texts.length;
      const refuseLong = truncate !== true;
      return served(request, reply, async (opts) => reply.send((await embedder.embed(texts, { normalize: normalize ?? true, refuseLong, ...opts })).map((e) => Array.from(e))), (e) => {
        if (e instanceof RangeError) return new HttpError(413, e.message);
        if (e instanceof TypeError) return new HttpError(422, e.message);
        return null;
      });
    });
  }

  app.get('/health', async () => ({ status: 'ok' }));

  app.get('/metrics', async (_request, reply) => {
    const w = new PromWriter();
    w.counter('er_http_requests_total', 'HTTP requests answered, by route, task and status (499: the client went away first)', [...httpCounts.values()]);
    w.histogram('er_http_request_duration_seconds', 'HTTP request latency, from the request\'s arrival to its response', [...httpLatency].map(([route, h]) => ({ labels: { route }, hist: h.snapshot(), scale: 1e-3 })));
    w.gauge('er_http_requests_in_flight', 'HTTP requests being handled', [{ labels: {}, value: inFlight }]);
    w.gauge('er_event_loop_delay_seconds', 'event-loop delay since the server started (perf_hooks.monitorEventLoopDelay, 5 ms resolution)', [
      { labels: { quantile: '0.5' }, value: loopDelay.percentile(50) / 1e9 },
      { labels: { quantile: '0.99' }, value: loopDelay.percentile(99) / 1e9 },
      { labels: { quantile: '1' }, value: loopDelay.max / 1e9 },
    ]);
    w.histogram('er_event_loop_lag_seconds', `how late a ${LOOP_LAG_TICK_MS} ms timer fired (event-loop blocking), one observation per tick`, [{ labels: {}, hist: loopLag.snapshot(), scale: 1e-3 }]);
    const perTask: { task: string; m: Partial<SessionMetrics> }[] = [];
    for (const [task, s] of sessions) {
      if (typeof s.metrics !== 'function') continue;
      try {
        perTask.push({ task, m: s.metrics() });
      } catch {
        // a session that cannot report is left out of this scrape, not a failed scrape
      }
    }
    if (embedder && typeof embedder.metrics === 'function') {
      try {
        perTask.push({ task: 'embed', m: embedder.metrics() });
      } catch {
        // left out of this scrape
      }
    }
    writeSessionMetrics(w, perTask);
    reply.type('text/plain; version=0.0.4; charset=utf-8');
    return w.toString();
  });

  let closed: Promise<void> | undefined;
  async function doClose(): Promise<void> {
    closing = true;
    loopDelay.disable();
    clearInterval(lagTimer);
    // stop listening at once; fastify answers 503 to requests that arrive from now on
    const appClosed = app.close();
    // every accepted request (its headers arrived before the close) gets its answer
    if (inFlight > 0) await new Promise<void>((resolve) => { drained = resolve; });
    app.server.closeIdleConnections();
    // a connection that stays open without a request must not hold the exit
    const t = setTimeout(() => app.server.closeAllConnections(), 2000);
    try {
      await appClosed;
    } finally {
      clearTimeout(t);
    }
    const errors: string[] = [];
    for (const [name, s] of sessions) {
      try {
        await s.close();
      } catch (err) {
        errors.push(`${name}: ${(err as Error).message}`);
      }
    }
    if (embedder) {
      try {
        await embedder.close();
      } catch (err) {
        errors.push(`embed: ${(err as Error).message}`);
      }
    }
    if (errors.length) throw new Error(`closing sessions failed: ${errors.join('; ')}`);
  }

  return {
    app,
    async listen() {
      await app.listen({ port: o.port, host: o.host });
      const a = app.server.address() as AddressInfo;
      return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
    },
    close() {
      closed ??= doClose();
      return closed;
    },
  };
}

/** What the schema cannot say because it depends on the task: classification takes text (+ pair), NER text or words. */
function checkInputs(kind: 'classification' | 'ner', inputs: Record<string, unknown>[], maxTextChars: number): void {
  inputs.forEach((x, i) => {
    if (kind === 'classification') {
      if (x.words !== undefined) throw new HttpError(400, `inputs[${i}].words: a classification task takes {"text", "pair"?}, not words`);
      if (x.text === undefined) throw new HttpError(400, `inputs[${i}].text: required`);
      return;
    }
    if (x.pair !== undefined) throw new HttpError(400, `inputs[${i}].pair: an NER task takes {"text"} or {"words"}, not a pair`);
    if (x.text === undefined && x.words === undefined) throw new HttpError(400, `inputs[${i}].text: required (or "words")`);
    if (x.text !== undefined && x.words !== undefined) throw new HttpError(400, `inputs[${i}]: give "text" or "words", not both`);
    if (Array.isArray(x.words)) {
      let chars = -1;
      for (const w of x.words as string[]) chars += w.length + 1;
      if (chars > maxTextChars) throw new HttpError(400, `inputs[${i}].words: longer than ${maxTextChars} characters together (--max-text-chars)`);
    }
  });
}
