// Every public export of the package (src/index.ts, what both `import` and `require`
// give) has TSDoc: a user's editor shows what it is for. The package's error classes
// are exported so callers can tell failures apart with instanceof.
import * as path from 'path';
import * as ts from 'typescript';
import { describe, expect, it } from 'vitest';
import * as api from '../../src/index';
import { ROOT } from '../helpers/fixtures';

describe('the public API', () => {
  it('every export of src/index.ts has a documentation comment', () => {
    const entry = path.join(ROOT, 'src', 'index.ts');
    const program = ts.createProgram([entry], { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, strict: true, esModuleInterop: true, skipLibCheck: true, types: ['node'] });
    const checker = program.getTypeChecker();
    const mod = checker.getSymbolAtLocation(program.getSourceFile(entry)!)!;
    const exports = checker.getExportsOfModule(mod);
    expect(exports.length).toBeGreaterThan(40);
    const undocumented: string[] = [];
    for (const e of exports) {
      const target = e.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(e) : e;
      // a namespace re-export (`export * as cost`) is documented by its module's header comment
      const decl = target.declarations?.[0];
      if (decl && ts.isSourceFile(decl)) {
        if (!/^\s*\/\*\*/.test(decl.text)) undocumented.push(`${e.name} (module ${path.relative(ROOT, decl.fileName)})`);
        continue;
      }
      const doc = ts.displayPartsToString(target.getDocumentationComment(checker)).trim();
      if (!doc) undocumented.push(`${e.name} (${decl ? path.relative(ROOT, decl.getSourceFile().fileName) : '?'})`);
    }
    expect(undocumented).toEqual([]);
  });

  it('the error classes are exported and are Errors', () => {
    for (const name of ['CheckpointError', 'StoreError', 'InputError', 'QueueFullError'] as const) {
      const C = (api as Record<string, unknown>)[name] as new (m: string) => Error;
      expect(typeof C).toBe('function');
      const e = new C('x');
      expect(e).toBeInstanceOf(Error);
      expect(e.name).toBe(name);
    }
  });
});
