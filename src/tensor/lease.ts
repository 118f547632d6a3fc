/**
 * Leases on lent memory. The store's prefetcher lends each batch's arrays out of a
 * ring of native buffers that it refills once the batch is given back. A lease keeps
 * the batch's slot out of the ring while anything still reads it:
 *
 * - the consumer holds it until it asks for the next batch (or calls `release()`),
 * - every native call that reads a leased array (a forward pass, a training step)
 *   pins it until that call has finished, even when the caller did not await it,
 * - `hold()` pins it for as long as JavaScript code wants to keep the values.
 *
 * The slot goes back to the ring when the consumer is done and no pin is left. After
 * that the arrays are detached (length 0), so a stale view can never silently show
 * the next batch's data. Everything here runs on the main thread.
 */

interface Lease {
  pins: number;
  consumerDone: boolean;
  returned: boolean;
  giveBack: () => void;
}

const leases = new WeakMap<ArrayBufferLike, Lease>();

/** Lends arrays that share one release; returns the consumer's handle on the lease. */
export function lend(arrays: readonly ArrayBufferView[], giveBack: () => void): { done(): void; hold(): () => void } {
  const lease: Lease = { pins: 0, consumerDone: false, returned: false, giveBack };
  for (const a of arrays) leases.set(a.buffer, lease);
  const settle = () => {
    if (!lease.returned && lease.consumerDone && lease.pins === 0) {
      lease.returned = true;
      lease.giveBack();
    }
  };
  return {
    done() {
      lease.consumerDone = true;
      settle();
    },
    hold() {
      if (lease.returned) throw new Error('this batch was already given back to the prefetch ring; hold() it before asking for the next batch');
      lease.pins++;
      let once = false;
      return () => {
        if (once) return;
        once = true;
        lease.pins--;
        settle();
      };
    },
  };
}

function pin(arrays: readonly (ArrayBufferView | null | undefined)[]): (() => void)[] {
  const out: (() => void)[] = [];
  const seen = new Set<Lease>();
  for (const a of arrays) {
    if (!a) continue;
    const lease = leases.get(a.buffer);
    if (!lease || seen.has(lease)) continue;
    if (lease.returned) throw new Error('a batch from ActivationStore.batches() was used after it was given back (it is valid until the next batch is requested; call batch.hold() to keep it, or pass copy: true)');
    seen.add(lease);
    lease.pins++;
    out.push(() => {
      lease.pins--;
      if (!lease.returned && lease.consumerDone && lease.pins === 0) {
        lease.returned = true;
        lease.giveBack();
      }
    });
  }
  return out;
}

/**
 * Runs native work that reads `arrays`, keeping any leased ones pinned until the work
 * settles. Arrays that are not leased are passed through untouched.
 */
export async function whileReading<T>(arrays: readonly (ArrayBufferView | null | undefined)[], work: () => Promise<T>): Promise<T> {
  const unpins = pin(arrays);
  if (unpins.length === 0) return work();
  try {
    return await work();
  } finally {
    for (const u of unpins) u();
  }
}
