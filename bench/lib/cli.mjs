// What the benchmark scripts share: reading --name value flags, the CPU line of a results
// table, and writing a table with its JSON beside it under bench/results/.
import * as fs from 'fs';

/** flag('epochs', '6') reads `--epochs N` from argv, or gives the default. */
export function flagReader(args) {
  return (name, dflt) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : dflt;
  };
}

/** The CPU as the results files state it, from cpuDescription(). */
export function cpuText(c) {
  return `${c.model} (${c.vendor}, family ${c.family}, model ${c.modelNumber}${c.hypervisor ? ', under a hypervisor' : ''}; ${c.simd.join(' ')})`;
}

/** Writes `<base>.md` and `<base>.json` and says so on stderr under the benchmark's tag. */
export function writeResults(base, md, results, tag) {
  fs.writeFileSync(`${base}.md`, md);
  fs.writeFileSync(`${base}.json`, JSON.stringify(results, null, 2) + '\n');
  process.stderr.write(`[${tag}] wrote ${base}.md and .json\n`);
}
