// vitest globalSetup for scripts/test-asan.sh (vitest.asan.config.ts), run in vitest's
// main process. vitest stops a test worker with SIGTERM and SIGKILLs it 500 ms later;
// LeakSanitizer's end-of-process check in an ASan process takes longer than that, so
// the workers (where all of the addon's work happens) would be killed in the middle of
// it and never report. Here the SIGKILL is put off by two minutes: a worker that hangs
// is still killed, just later.
import { ChildProcess } from 'child_process';

export default function setup(): void {
  const kill = ChildProcess.prototype.kill;
  ChildProcess.prototype.kill = function (this: ChildProcess, signal?: NodeJS.Signals | number): boolean {
    if (signal === 'SIGKILL' && this.exitCode === null) {
      setTimeout(() => kill.call(this, 'SIGKILL'), 120_000).unref();
      return true;
    }
    return kill.call(this, signal);
  };
}
