import { spawn, type ChildProcess } from 'node:child_process'
import type { Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { decodeEvent, encodeRun, FrameReader } from './frames.js'
import type { InstanceEvent, InstanceInit, ProviderFallback, RunCommand } from './instance-protocol.js'
import type { ExecutionProvider } from './providers.js'
import type { ModelSignature, Tensor } from './signature.js'

// One model instance, in a worker thread or in a child process (MODEL_ISOLATION). A
// thread costs nothing to talk to but cannot be stopped inside a run (terminating it
// then aborts the whole process); a process can be killed at any moment, and a native
// crash inside onnxruntime takes down only that process.

export type Isolation = 'thread' | 'process'

export interface RunResult {
  readonly outputs: readonly Tensor[]
  readonly inferenceMs: number
}

export interface LoadedInstance {
  readonly provider: ExecutionProvider
  readonly fallbacks: readonly ProviderFallback[]
  readonly signature: ModelSignature
}

/** An error raised by onnxruntime while running a batch: the request's fault or the model's, never retried. */
export class RunError extends Error {
  override readonly name = 'RunError'
}

/** The instance died under a run: maybe its fault, maybe the request's; the run may be retried once alone. */
export class InstanceCrashed extends Error {
  override readonly name = 'InstanceCrashed'
}

interface Pending {
  resolve: (result: RunResult) => void
  reject: (error: Error) => void
}

/** A started instance: runs one batch at a time and reports when it is free again or dead. */
export abstract class ModelInstance {
  private pending: Pending | undefined
  private nextJobId = 0
  private dead = false
  onSettled: () => void = () => {}
  onDeath: (error: Error) => void = () => {}

  /** Whether `kill` ends a run in progress (a process) or must wait for it (a thread). */
  abstract readonly stoppable: boolean

  get idle (): boolean {
    return this.pending === undefined && !this.dead
  }

  /** Resolves when the run in progress (if any) has ended. */
  whenIdle (): Promise<void> {
    const pending = this.pending
    if (pending === undefined) return Promise.resolve()
    return new Promise((resolve) => {
      const { resolve: done, reject: failed } = pending
      pending.resolve = (result) => { done(result); resolve() }
      pending.reject = (error) => { failed(error); resolve() }
    })
  }

  /**
   * Runs a batch. `transfer`: buffers a thread may take over instead of copying (a
   * process gets a copy of the bytes anyway, so the caller keeps them).
   */
  run (inputs: readonly Tensor[], outputs: readonly string[] | undefined, transfer: ArrayBuffer[]): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject }
      this.send({ type: 'run', jobId: this.nextJobId++, inputs, ...(outputs !== undefined && { outputs }) }, transfer)
    })
  }

  /** Ends the instance: at once for a process, after its run for a thread. */
  abstract stop (): Promise<void>

  protected abstract send (command: RunCommand, transfer: ArrayBuffer[]): void

  protected handle (event: InstanceEvent): void {
    if (event.type !== 'result' && event.type !== 'run-failed') return
    const pending = this.pending
    this.pending = undefined
    if (event.type === 'result') pending?.resolve({ outputs: event.outputs, inferenceMs: event.inferenceMs })
    else pending?.reject(new RunError(event.message))
    this.onSettled()
  }

  protected die (error: Error): void {
    if (this.dead) return
    this.dead = true
    const pending = this.pending
    this.pending = undefined
    pending?.reject(new InstanceCrashed(`model instance failed: ${error.message}`))
    this.onDeath(error)
  }
}

// Run from TypeScript sources (as the tests run), the entry points are .ts files that
// need the TypeScript loader registered in the new thread or process first.
const FROM_SOURCE = import.meta.url.endsWith('.ts')
const entry = (name: string): URL => new URL(`./${name}.${FROM_SOURCE ? 'ts' : 'js'}`, import.meta.url)

class ThreadInstance extends ModelInstance {
  readonly stoppable = false

  constructor (private readonly worker: Worker) {
    super()
    worker.on('message', (event: InstanceEvent) => this.handle(event))
    worker.on('error', (error) => this.die(error))
    worker.on('exit', (code) => this.die(new Error(`model worker thread exited with code ${code}`)))
  }

  async stop (): Promise<void> {
    await this.whenIdle()
    await this.worker.terminate()
  }

  protected send (command: RunCommand, transfer: ArrayBuffer[]): void {
    this.worker.postMessage(command, transfer)
  }

  static start (init: InstanceInit): { instance: Promise<ThreadInstance>, loaded: Promise<LoadedInstance> } {
    const worker = FROM_SOURCE
      ? new Worker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(entry('worker').href)}) })`, { eval: true, workerData: init })
      : new Worker(entry('worker'), { workerData: init })
    return waitReady(
      (listener) => worker.once('message', listener),
      (listener) => { worker.once('error', listener); worker.once('exit', (code: number) => listener(new Error(`model worker thread exited with code ${code} while loading`))) },
      () => { void worker.terminate() },
      () => new ThreadInstance(worker)
    )
  }
}

class ProcessInstance extends ModelInstance {
  readonly stoppable = true
  private readonly exited: Promise<void>

  constructor (private readonly child: ChildProcess, private readonly channel: Socket, reader: FrameReader) {
    super()
    reader.onFrame = (frame) => this.handle(decodeEvent(frame))
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()))
    child.once('exit', (code, signal) => this.die(new Error(`model process exited (${signal ?? `code ${code}`})`)))
    channel.on('error', () => {})
  }

  get pid (): number | undefined {
    return this.child.pid
  }

  async stop (): Promise<void> {
    this.child.kill('SIGKILL')
    await this.exited
  }

  protected send (command: RunCommand): void {
    this.channel.write(encodeRun(command))
  }

  static start (init: InstanceInit): { instance: Promise<ProcessInstance>, loaded: Promise<LoadedInstance> } {
    const execArgv = FROM_SOURCE ? ['--import', 'tsx'] : []
    const child = spawn(process.execPath, [...execArgv, fileURLToPath(entry('model-process')), JSON.stringify(init)], {
      stdio: ['ignore', 'ignore', 'inherit', 'pipe']
    })
    const channel = child.stdio[3] as Socket
    const reader = new FrameReader(() => {})
    channel.on('data', (chunk: Buffer) => reader.push(chunk))
    return waitReady(
      (listener) => { reader.onFrame = (frame) => listener(decodeEvent(frame)) },
      (listener) => {
        child.once('error', listener)
        child.once('exit', (code, signal) => listener(new Error(`model process exited (${signal ?? `code ${code}`}) while loading`)))
      },
      () => { child.kill('SIGKILL') },
      () => new ProcessInstance(child, channel, reader)
    )
  }
}

/** Waits for the instance's first event: ready (with what it loaded), or why it could not load. */
function waitReady<I extends ModelInstance> (
  onFirstEvent: (listener: (event: InstanceEvent) => void) => void,
  onFailure: (listener: (error: Error) => void) => void,
  abort: () => void,
  adopt: () => I
): { instance: Promise<I>, loaded: Promise<LoadedInstance> } {
  let loaded!: (value: LoadedInstance) => void
  const loadedPromise = new Promise<LoadedInstance>((resolve) => { loaded = resolve })
  const instance = new Promise<I>((resolve, reject) => {
    let settled = false
    const fail = (error: Error): void => {
      if (settled) return
      settled = true
      abort()
      reject(error)
    }
    onFailure(fail)
    onFirstEvent((event) => {
      if (settled) return
      if (event.type === 'ready') {
        settled = true
        loaded({ provider: event.provider, fallbacks: event.fallbacks, signature: event.signature })
        resolve(adopt())
      } else {
        fail(new Error(event.type === 'load-failed' ? event.message : `unexpected message from a model instance: ${event.type}`))
      }
    })
  })
  return { instance, loaded: loadedPromise }
}

/** Starts one instance and resolves once its session is open, with what it loaded. */
export async function startInstance (isolation: Isolation, init: InstanceInit): Promise<{ instance: ModelInstance, loaded: LoadedInstance }> {
  const started = isolation === 'process' ? ProcessInstance.start(init) : ThreadInstance.start(init)
  const instance = await started.instance
  return { instance, loaded: await started.loaded }
}
