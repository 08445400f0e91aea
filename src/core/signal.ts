/**
 * The run's abort signals. Every command in flight listens on its run's signal, one per host at a time, so a
 * fleet of more than 10 hosts would pass node's default of 10 listeners and print a
 * MaxListenersExceededWarning in the middle of the deploy log. The run's signals have no such limit.
 */
import { setMaxListeners } from 'node:events'

/** `signal`, with no limit on its listeners. */
export function runSignal(signal: AbortSignal): AbortSignal {
  try {
    setMaxListeners(0, signal)
  } catch {
    // a signal of another realm (a test sandbox) node does not take for an EventTarget: it keeps the default
  }
  return signal
}

/** A controller whose signal has no limit on its listeners. */
export function runController(): AbortController {
  const controller = new AbortController()
  runSignal(controller.signal)
  return controller
}

/** A signal that is never aborted (the undo and the finish run to the end), with no limit on its listeners. */
export function freshSignal(): AbortSignal {
  return runController().signal
}
