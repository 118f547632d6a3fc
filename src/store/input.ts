/**
 * Reading corpora for `er encode`: JSON lines, one object a line. Every bad line is
 * reported with its file and line number; the caller chooses to skip it or stop.
 */
import * as fs from 'fs';
import * as readline from 'readline';
import type { EncodeItem } from './store';

export interface JsonlFields {
  /** field holding the id; when absent from a line, the line number is the id. Default "id". */
  id?: string;
  /** field holding the text; default "text" */
  text?: string;
  /** field holding the second text of a pair; default "text_pair" */
  pair?: string;
}

export interface BadLine {
  file: string;
  line: number;
  reason: string;
}

/** An input file (JSONL) line that cannot be used: the error names the file, the line and the reason. */
export class InputError extends Error {
  constructor(readonly bad: BadLine) {
    super(`${bad.file}:${bad.line}: ${bad.reason}`);
    this.name = 'InputError';
  }
}

/** Counts the lines of a file that are not blank (for progress totals). */
export async function countJsonl(file: string): Promise<number> {
  let n = 0;
  const rl = readline.createInterface({ input: fs.createReadStream(file, 'utf8'), crlfDelay: Infinity });
  for await (const line of rl) if (line.trim() !== '') n++;
  return n;
}

/**
 * Yields the items of a JSON-lines file. Blank lines are ignored. A line that is not
 * a JSON object, or lacks a string text, is passed to `onBad` (which may throw to
 * stop) and skipped.
 */
export async function* readJsonl(file: string, fields: JsonlFields = {}, onBad: (b: BadLine) => void = (b) => { throw new InputError(b); }): AsyncGenerator<EncodeItem> {
  const idField = fields.id ?? 'id';
  const textField = fields.text ?? 'text';
  const pairField = fields.pair ?? 'text_pair';
  if (!fs.existsSync(file)) throw new Error(`input file ${file} does not exist`);
  const rl = readline.createInterface({ input: fs.createReadStream(file, 'utf8'), crlfDelay: Infinity });
  let lineNo = 0;
  for await (const line of rl) {
    lineNo++;
    if (line.trim() === '') continue;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (err) {
      onBad({ file, line: lineNo, reason: `not valid JSON (${(err as Error).message})` });
      continue;
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
      onBad({ file, line: lineNo, reason: 'expected a JSON object' });
      continue;
    }
    const o = obj as Record<string, unknown>;
    const text = o[textField];
    if (typeof text !== 'string') {
      onBad({ file, line: lineNo, reason: `no string field "${textField}"` });
      continue;
    }
    const pair = o[pairField];
    if (pair !== undefined && typeof pair !== 'string') {
      onBad({ file, line: lineNo, reason: `field "${pairField}" is not a string` });
      continue;
    }
    const rawId = o[idField];
    if (rawId !== undefined && typeof rawId !== 'string' && typeof rawId !== 'number') {
      onBad({ file, line: lineNo, reason: `field "${idField}" is not a string or number` });
      continue;
    }
    const id = rawId === undefined ? `line:${lineNo}` : String(rawId);
    yield pair === undefined ? { id, text } : { id, text, pair: pair as string };
  }
}
