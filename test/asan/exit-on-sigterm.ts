// Loaded into every test worker by vitest.asan.config.ts (scripts/test-asan.sh only).
// vitest stops its forked workers with SIGTERM, and a process killed by a signal never
// runs its exit handlers, so LeakSanitizer's end-of-process check would never look at
// the workers, where all of the addon's work happens. Exiting normally on SIGTERM runs
// that check (its reports go to the files scripts/test-asan.sh inspects).
process.once('SIGTERM', () => process.exit(0));
