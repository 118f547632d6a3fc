// The store's index database (SQLite in the native addon): values round-trip by type,
// transactions commit or roll back, statements iterate and reset, SQLite's own errors
// reach JavaScript with its message; and a store whose index was written by the
// previous index library (better-sqlite3, test/fixtures/store-v1) opens, verifies,
// reads every record as that version read it, and takes new records.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import { Encoder } from '../../src/model/encoder';
import { IndexDatabase } from '../../src/store/sqlite';
import { ActivationStore } from '../../src/store/store';
import { native } from '../../src/native/binding';
import { FIXTURES } from '../helpers/fixtures';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-sqlite-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('IndexDatabase', () => {
  it('round-trips integers, floats, text, blobs, null and 64-bit integers', () => {
    const db = new IndexDatabase(path.join(tmp, 'types.sqlite'));
    db.exec('CREATE TABLE t (i INTEGER, f REAL, s TEXT, b BLOB, n, big INTEGER)');
    const blob = crypto.randomBytes(32);
    db.prepare('INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)').run(2 ** 40 + 3, 0.25, 'naïve 蛋白质 🧬', blob, null, 2n ** 62n);
    const r = db.prepare('SELECT * FROM t').get() as Record<string, unknown>;
    expect(r.i).toBe(2 ** 40 + 3);
    expect(r.f).toBe(0.25);
    expect(r.s).toBe('naïve 蛋白质 🧬');
    expect(Buffer.isBuffer(r.b) && (r.b as Buffer).equals(blob)).toBe(true);
    expect(r.n).toBeNull();
    expect(r.big).toBe(2n ** 62n);
    expect(db.prepare('SELECT i FROM t').pluck().get()).toBe(2 ** 40 + 3);
    expect(db.prepare('SELECT i FROM t WHERE i = ?').get(-1)).toBeUndefined();
    db.close();
  });

  it('a transaction that throws is rolled back; one that returns is committed', () => {
    const db = new IndexDatabase(path.join(tmp, 'tx.sqlite'));
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE t (k INTEGER PRIMARY KEY)');
    const ins = db.prepare('INSERT INTO t VALUES (?)');
    const many = db.transaction((ks: number[]) => { for (const k of ks) ins.run(k); });
    many([1, 2, 3]);
    expect(() => many([4, 5, 1])).toThrow(/UNIQUE constraint failed: t\.k/);
    expect(db.prepare('SELECT k FROM t ORDER BY k').pluck().all()).toEqual([1, 2, 3]);
    db.close();
    const again = new IndexDatabase(path.join(tmp, 'tx.sqlite'), { readonly: true });
    expect(again.prepare('SELECT count(*) FROM t').pluck().get()).toBe(3);
    expect(() => again.exec('INSERT INTO t VALUES (9)')).toThrow(/readonly database/);
    again.close();
  });

  it('iterate() yields rows one at a time and a loop left early resets the statement', () => {
    const db = new IndexDatabase(':memory:');
    db.exec('CREATE TABLE t (k INTEGER)');
    const ins = db.prepare('INSERT INTO t VALUES (?)');
    db.transaction(() => { for (let k = 0; k < 1000; k++) ins.run(k); })();
    const st = db.prepare('SELECT k FROM t WHERE k >= ? ORDER BY k').pluck();
    let n = 0;
    for (const k of st.iterate(10)) { if (n++ === 5) { expect(k).toBe(15); break; } }
    expect([...st.iterate(995)]).toEqual([995, 996, 997, 998, 999]);
    db.close();
  });

  it('wrong parameter counts, several statements in prepare() and a missing file are errors', () => {
    const db = new IndexDatabase(':memory:');
    expect(() => db.prepare('SELECT ?').get()).toThrow(/takes 1 parameters, got 0/);
    expect(() => db.prepare('SELECT 1; SELECT 2')).toThrow(/one SQL statement/);
    expect(() => db.prepare('SELEKT 1')).toThrow(/syntax error/);
    db.close();
    expect(() => db.prepare('SELECT 1')).toThrow(/closed/);
    expect(() => new IndexDatabase(path.join(tmp, 'missing.sqlite'), { fileMustExist: true })).toThrow(/unable to open/);
    expect(fs.existsSync(path.join(tmp, 'missing.sqlite'))).toBe(false);
    expect(native().sqliteVersion).toMatch(/^3\.\d+\.\d+$/);
  });
});

describe('a store whose index was written by the previous index library', () => {
  const fixture = path.join(FIXTURES, 'store-v1');
  const expected = JSON.parse(fs.readFileSync(path.join(fixture, 'digests.json'), 'utf8')) as { texts: string[]; digests: Record<string, string[]> };

  function digest(t: { data: Float32Array }): string {
    return crypto.createHash('sha256').update(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)).digest('hex');
  }

  it('opens read-only, verifies and reads every record as that version did', async () => {
    const copy = path.join(tmp, 'v1-read');
    fs.cpSync(fixture, copy, { recursive: true });
    const store = await ActivationStore.open(copy);
    const v = await store.verify();
    expect(v.ok).toBe(true);
    expect(v.docs).toBe(expected.texts.length);
    let records = 0;
    for (const [id, want] of Object.entries(expected.digests)) {
      const got = store.document(id)!.map((ref) => digest(store.read(ref)));
      expect(got).toEqual(want);
      records += got.length;
    }
    expect(records).toBe(v.records);
    store.close();
  });

  it('takes new records; old and new read back after reopening', async () => {
    const copy = path.join(tmp, 'v1-write');
    fs.cpSync(fixture, copy, { recursive: true });
    const enc = await Encoder.load(path.join(FIXTURES, 'tiny-bert'));
    const store = await ActivationStore.open(copy, { encoder: enc, write: true });
    const before = store.stats().records;
    const p = await store.encode([{ id: 'new-0', text: 'A sentence the old store did not hold.' }, { id: 'doc-0', text: expected.texts[0] }]);
    expect(p.textsSkipped).toBe(1);
    store.close();
    const again = await ActivationStore.open(copy);
    expect((await again.verify()).ok).toBe(true);
    expect(again.stats().records).toBe(before + again.document('new-0')!.length);
    expect(again.document('doc-0')!.map((ref) => digest(again.read(ref)))).toEqual(expected.digests['doc-0']);
    again.close();
    enc.close();
  });
});
