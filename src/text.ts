/** Shortens client-supplied text before it goes into an error message or a log line. */
export function truncate (text: string, max = 64): string {
  return text.length > max ? `${text.slice(0, max)}…` : text
}
