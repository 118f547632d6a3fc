/**
 * The store's index database: SQLite inside the native addon, with the small
 * synchronous surface the store uses (prepared statements, rows as objects, a
 * transaction helper). It opens and writes the same `index.sqlite` files as before.
 * @internal
 */
import { native, NativeSqliteDatabase, NativeSqliteStatement } from '../native/binding';

/** A prepared statement; parameters are positional. */
export class Statement {
  constructor(private readonly s: NativeSqliteStatement) {}

  /** Makes get/all/iterate return each row's first column instead of the row. */
  pluck(): this {
    this.s.pluck(true);
    return this;
  }

  run(...params: unknown[]): { changes: number } {
    return this.s.run(...params);
  }

  get(...params: unknown[]): unknown {
    return this.s.get(...params);
  }

  all(...params: unknown[]): unknown[] {
    return this.s.all(...params);
  }

  /** Rows one at a time; the statement is reset when the loop ends early or fails. */
  *iterate(...params: unknown[]): Generator<unknown> {
    this.s.bind(...params);
    try {
      for (let r = this.s.step(); r !== undefined; r = this.s.step()) yield r;
    } finally {
      this.s.reset();
    }
  }
}

export interface OpenOptions {
  readonly?: boolean;
  /** Refuse to create the file when it does not exist. */
  fileMustExist?: boolean;
}

/** One SQLite database file. Not shared between threads: use it where it was opened. */
export class IndexDatabase {
  private readonly db: NativeSqliteDatabase;

  constructor(readonly file: string, opts: OpenOptions = {}) {
    this.db = new (native().SqliteDatabase)(file, !!opts.readonly, !!opts.fileMustExist || !!opts.readonly);
    // a page cache of up to 32 MiB (SQLite's default is 2 MiB): a store's key index past
    // that size would otherwise cost a read() system call for most lookups
    this.db.exec('PRAGMA cache_size = -32768');
  }

  /** Runs one or more statements that return nothing. */
  exec(sql: string): void {
    this.db.exec(sql);
  }

  /** `PRAGMA <text>`, e.g. `pragma('journal_mode = WAL')`. */
  pragma(text: string): void {
    this.db.exec(`PRAGMA ${text}`);
  }

  prepare(sql: string): Statement {
    return new Statement(this.db.prepare(sql));
  }

  /**
   * Wraps `fn` in a transaction: `fn(...args)` runs between BEGIN and COMMIT, and a
   * throw rolls it back and is rethrown. Nested calls run inside the outer transaction.
   */
  transaction<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
    return (...args: A): R => {
      if (this.db.inTransaction()) return fn(...args);
      this.db.exec('BEGIN');
      let result: R;
      try {
        result = fn(...args);
      } catch (err) {
        if (this.db.inTransaction()) this.db.exec('ROLLBACK');
        throw err;
      }
      this.db.exec('COMMIT');
      return result;
    };
  }

  close(): void {
    this.db.close();
  }
}
