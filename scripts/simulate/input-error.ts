/**
 * A bad command line or trace file: `npm run simulate` prints its message as one line
 * on stderr and exits 2, never with a stack trace.
 */
export class InputError extends Error {
  override readonly name = 'InputError'
}

export const EX_USAGE = 2
