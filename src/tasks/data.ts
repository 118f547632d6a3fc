/**
 * Task data: JSON lines for classification (a text or a text pair and a label) and
 * CoNLL for NER (one token a line, the tag in a chosen column). Every problem is
 * reported with its file and line.
 */
import * as fs from 'fs';
import * as path from 'path';
import { BadLine, InputError } from '../store/input';

/** One classification example. `label` is absent in unlabeled prediction input. */
export interface TextExample {
  id: string;
  text: string;
  pair?: string;
  label?: string;
  /** 1-based line in its file */
  line: number;
}

/** One NER sentence. `tags` is absent in unlabeled prediction input. */
export interface WordsExample {
  id: string;
  words: string[];
  tags?: string[];
  line: number;
}

export interface JsonlTaskFields {
  id?: string;
  text?: string;
  pair?: string;
  label?: string;
}

export type DataFormat = 'jsonl' | 'conll';

/** The format of a data file from its extension: .jsonl / .json are JSON lines; .conll, .bio, .iob, .tsv, .txt are CoNLL. */
export function detectFormat(file: string): DataFormat {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.jsonl' || ext === '.json' || ext === '.ndjson') return 'jsonl';
  if (['.conll', '.bio', '.iob', '.iob2', '.tsv', '.txt'].includes(ext)) return 'conll';
  throw new Error(`${file}: cannot tell the format from the extension ${JSON.stringify(ext)}; name it .jsonl or .conll (or pass the format)`);
}

function readLines(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${file}: cannot read: ${(err as Error).message}`);
  }
  const lines = text.split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/**
 * Reads JSON-lines examples. `requireLabel` makes a missing label a bad line. Bad
 * lines go to `onBad` (which may throw to stop); they are never dropped silently.
 */
export function readJsonlExamples(file: string, fields: JsonlTaskFields = {}, opts: { requireLabel?: boolean; onBad?: (b: BadLine) => void } = {}): TextExample[] {
  const idF = fields.id ?? 'id', textF = fields.text ?? 'text', pairF = fields.pair ?? 'text_pair', labelF = fields.label ?? 'label';
  const onBad = opts.onBad ?? ((b: BadLine) => { throw new InputError(b); });
  const out: TextExample[] = [];
  readLines(file).forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    let o: unknown;
    try {
      o = JSON.parse(raw);
    } catch (err) {
      onBad({ file, line, reason: `not valid JSON (${(err as Error).message})` });
      return;
    }
    if (typeof o !== 'object' || o === null || Array.isArray(o)) return onBad({ file, line, reason: 'expected a JSON object' });
    const r = o as Record<string, unknown>;
    if (typeof r[textF] !== 'string') return onBad({ file, line, reason: `no string field "${textF}"` });
    if (r[pairF] !== undefined && typeof r[pairF] !== 'string') return onBad({ file, line, reason: `field "${pairF}" is not a string` });
    const label = r[labelF];
    if (label === undefined && opts.requireLabel) return onBad({ file, line, reason: `no field "${labelF}"` });
    if (label !== undefined && typeof label !== 'string' && typeof label !== 'number' && typeof label !== 'boolean') {
      return onBad({ file, line, reason: `field "${labelF}" must be a string or a number` });
    }
    const id = r[idF] === undefined ? `${path.basename(file)}:${line}` : String(r[idF]);
    out.push({ id, text: r[textF] as string, ...(r[pairF] !== undefined ? { pair: r[pairF] as string } : {}), ...(label !== undefined ? { label: String(label) } : {}), line });
  });
  return out;
}

/**
 * Reads CoNLL: one token a line (columns split by whitespace; the token in
 * `tokenColumn`, the tag in `tagColumn`, default the last), sentences separated by
 * blank lines, `-DOCSTART-` lines skipped. With `tags: false` the file has tokens only.
 */
export function readConll(file: string, opts: { tokenColumn?: number; tagColumn?: number; tags?: boolean; onBad?: (b: BadLine) => void } = {}): WordsExample[] {
  const withTags = opts.tags ?? true;
  const tokenCol = opts.tokenColumn ?? 0;
  const onBad = opts.onBad ?? ((b: BadLine) => { throw new InputError(b); });
  const out: WordsExample[] = [];
  let words: string[] = [], tags: string[] = [], start = 0, bad = false;
  const flush = () => {
    if (words.length > 0 && !bad) out.push({ id: `${path.basename(file)}:${start}`, words, ...(withTags ? { tags } : {}), line: start });
    words = [];
    tags = [];
    bad = false;
  };
  readLines(file).forEach((raw, i) => {
    const line = i + 1;
    const t = raw.trim();
    if (t === '') return flush();
    if (t.startsWith('-DOCSTART-')) return;
    const cols = t.split(/\s+/);
    if (words.length === 0) start = line;
    const tagCol = opts.tagColumn === undefined ? cols.length - 1 : opts.tagColumn < 0 ? cols.length + opts.tagColumn : opts.tagColumn;
    if (tokenCol >= cols.length || (withTags && (cols.length < 2 || tagCol < 0 || tagCol >= cols.length || tagCol === tokenCol))) {
      bad = true;
      return onBad({ file, line, reason: withTags ? `expected a token and a tag (column ${tagCol + 1}), found ${cols.length} column(s)` : 'no token' });
    }
    words.push(cols[tokenCol]);
    if (withTags) tags.push(cols[tagCol]);
  });
  flush();
  return out;
}

/** The tag scheme of a set of tags: IOB2/BIO (B- and I-), IO (I- only), checked for unknown prefixes. */
export function tagScheme(tags: Iterable<string>): 'BIO' | 'IO' {
  let sawB = false;
  for (const t of tags) {
    if (t === 'O') continue;
    const m = /^([BI])-(.+)$/.exec(t);
    if (!m) throw new Error(`tag ${JSON.stringify(t)} is not O, B-<type> or I-<type>; NER tags must use the BIO, IOB2 or IO scheme`);
    if (m[1] === 'B') sawB = true;
  }
  return sawB ? 'BIO' : 'IO';
}
