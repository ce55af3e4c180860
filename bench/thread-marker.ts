// Loaded into the gateway with `node --import`, which runs it in every thread: each
// worker thread (a model instance) leaves its OS thread id in the directory named by
// BENCH_THREAD_MARKERS, so the bench can read the workers' CPU time from /proc.
// Node 20 gives every thread the same name, so /proc alone cannot tell them apart.
import { readlinkSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { isMainThread } from 'node:worker_threads'

const dir = process.env.BENCH_THREAD_MARKERS
if (!isMainThread && dir !== undefined && dir !== '') {
  // /proc/thread-self links to <pid>/task/<tid>.
  writeFileSync(join(dir, basename(readlinkSync('/proc/thread-self'))), '')
}
