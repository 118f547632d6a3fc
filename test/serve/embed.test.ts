// POST /embed with text-embeddings-inference's request and response shapes, on the real
// MiniLM: values equal sentence-transformers', long texts refused unless truncate.
import * as fs from 'fs';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddingSession } from '../../src/infer/embed';
import { createServer } from '../../src/serve/server';
import { FIXTURES, requireMiniLM } from '../helpers/fixtures';

const ref = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'minilm-embeddings.json'), 'utf8')) as { texts: string[]; mean: number[][] };
let url = '';
let server: ReturnType<typeof createServer>;

beforeAll(async () => {
  const embedder = await EmbeddingSession.open(requireMiniLM());
  server = createServer({}, { port: 0, embedder });
  url = await server.listen();
});
afterAll(async () => {
  await server.close();
});

async function post(body: unknown): Promise<{ status: number; json: unknown }> {
  const r = await fetch(`${url}/embed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, json: await r.json() };
}

describe('POST /embed', () => {
  it('takes a string or a list of strings and answers [[...], ...] equal to sentence-transformers within 1e-5', async () => {
    const one = await post({ inputs: ref.texts[0] });
    expect(one.status).toBe(200);
    expect((one.json as number[][]).length).toBe(1);
    const many = await post({ inputs: ref.texts.slice(0, 4), normalize: true });
    expect(many.status).toBe(200);
    const got = many.json as number[][];
    expect(got).toHaveLength(4);
    let worst = 0;
    got.forEach((row, i) => row.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - ref.mean[i][j])))));
    expect(worst).toBeLessThan(1e-5);
    const raw = (await post({ inputs: [ref.texts[0]], normalize: false })).json as number[][];
    expect(Math.abs(Math.hypot(...raw[0]) - 1)).toBeGreaterThan(1e-3);
  });

  it('a text longer than the model takes is a 413 (Validation) unless truncate is true', async () => {
    const long = await post({ inputs: [ref.texts[4]] });
    expect(long.status).toBe(413);
    expect(long.json).toMatchObject({ error_type: 'Validation' });
    expect((long.json as { error: string }).error).toMatch(/inputs\[0\]: \d+ tokens, more than the 256/);
    const cut = await post({ inputs: [ref.texts[4]], truncate: true });
    expect(cut.status).toBe(200);
    let worst = 0;
    (cut.json as number[][])[0].forEach((v, j) => (worst = Math.max(worst, Math.abs(v - ref.mean[4][j]))));
    expect(worst).toBeLessThan(1e-5);
  });

  it('bad bodies get a 400 naming the field; /metrics counts the embed requests', async () => {
    const bad = await post({ inputs: [3] });
    expect(bad.status).toBe(400);
    expect((bad.json as { error: string }).error).toMatch(/inputs/);
    expect((await post({})).status).toBe(400);
    expect((await post({ inputs: 'x', normalize: 'yes' })).status).toBe(400);
    const m = await (await fetch(`${url}/metrics`)).text();
    expect(m).toMatch(/task="embed"/);
    expect(m).toMatch(/er_event_loop_delay_seconds\{quantile="0\.99"\} \d/);
    expect(m).toMatch(/er_http_requests_total\{route="\/embed",task="embed",status="200"\} [1-9]/);
  });
});
