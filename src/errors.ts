/**
 * Errors raised for things a user can get wrong. Every message names the file or
 * argument at fault and says what was expected.
 */

/** A model directory, config or weight file that cannot be used. */
export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}
