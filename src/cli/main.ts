#!/usr/bin/env node
/**
 * The `er` command. Each subcommand lives in its own module under src/cli/ and
 * registers itself here.
 */
import { Command } from 'commander';
import { registerCost } from './cost';
import { registerDemo } from './demo';
import { registerEncode } from './encode';
import { registerInspect } from './inspect';
import { registerTask } from './task';
import { registerInfo } from './info';
import { registerServe } from './serve';
import { registerStore } from './store';
import { registerWorker } from './worker';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('er')
    .description('embedding-recycler: encode a corpus once with the first k layers, then run only the layers above k')
    .showHelpAfterError();
  registerDemo(program);
  registerInfo(program);
  registerCost(program);
  registerEncode(program);
  registerInspect(program);
  registerTask(program);
  registerServe(program);
  registerStore(program);
  registerWorker(program);
  return program;
}

if (require.main === module) {
  buildProgram()
    .parseAsync(process.argv)
    .catch((err: Error) => {
      process.stderr.write(`er: ${err.message}\n`);
      process.exit(1);
    });
}
