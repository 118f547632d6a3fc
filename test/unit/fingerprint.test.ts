// Weight fingerprints bind stores and task directories to the model they were made with, so
// a fingerprint must not change when the code does: a store or task made by an earlier
// version has to open with a later one. The expected values below were computed by the code
// before EncoderShape gained `relativeBuckets` (MPNet); adding a field to the shape changed
// every fingerprint until the hashed text left it out.
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { forgetFingerprints, readCheckpoint, weightFingerprint, weightFingerprintAsync } from '../../src/model/checkpoint';
import { FIXTURES } from '../helpers/fixtures';

describe('weight fingerprints are stable across versions', () => {
  it('tiny-bert at k = 1 keeps the fingerprint earlier versions gave it (sync and worker-thread paths)', async () => {
    const ck = readCheckpoint(path.join(FIXTURES, 'tiny-bert'));
    const want = 'ba3dd8348e990b9bdab8797d280fc574cf45bb647cc879589f4d53fe50d75d13';
    forgetFingerprints();
    expect(weightFingerprint(ck, 1)).toBe(want);
    forgetFingerprints();
    expect(await weightFingerprintAsync(ck, 1)).toBe(want);
  });

  it('an MPNet checkpoint hashes its relative position buckets (a different bias table gives another fingerprint)', () => {
    const ck = readCheckpoint(path.join(FIXTURES, 'tiny-mpnet'));
    forgetFingerprints();
    const a = weightFingerprint(ck, 1);
    forgetFingerprints();
    const b = weightFingerprint({ ...ck, shape: { ...ck.shape, relativeBuckets: 64 } }, 1);
    expect(a).not.toBe(b);
  });
});
