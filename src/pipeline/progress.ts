/**
 * A run's progress, saved as it goes so that someone else can finish the run when its process is killed: the
 * Action's post step (src/flows/interrupted.ts) after the runner SIGKILLs a cancelled main step.
 *
 * Saved at each stage's start and end, before and after each host's switch and its undo, and whenever a
 * switch strategy says its per-host state changed (`ctx.progress.checkpoint()`), so that what is saved never
 * says less than what the run did on the hosts.
 */
import type { LockOwnerFields } from '../commands/lock.js'
import type { Actor, HostSession, RunContext, RunProgressHooks } from '../host/context.js'
import { errorMessage } from '../core/errors.js'
import type { HostStage, Stage, UndoInfo } from './stage.js'
import type { SwitchStrategy } from './switch.js'

export interface HostProgress {
  name: string
  /** The release that served before this run; null when none did. */
  previous: string | null
  /** This run started to switch this host (the strategy's activate began). */
  switched: boolean
  /** The switch was undone on this host (the strategy's restore finished). */
  restored: boolean
  /** What the strategy needs to undo its switch on this host later (see SwitchStrategy.save). */
  strategy?: unknown
}

export interface RunProgress {
  v: 1
  command: 'deploy' | 'rollback'
  /** When the run started (ISO); with `release`, it identifies the run's history line. */
  started: string
  actor: Actor
  /** The lock this run holds (with its token); unset before it was taken and after it was released. */
  lock?: LockOwnerFields
  /** The release this run makes current (deploy: the new one; rollback: the target). */
  release?: string
  /** The backup this run took before deploying. */
  backup?: string
  /** The stage running or last run. */
  stage: string
  /** Every stage that started, in order, and every one whose undo finished. */
  stages: string[]
  undone: string[]
  /** What each stage's undo needs, by stage name (see Stage.save): the migrate stage's revision and state. */
  saved: Record<string, unknown>
  strategy?: string
  hosts: HostProgress[]
  /** The release passed verify on every host. */
  verified: boolean
  /** The run recorded itself (history, log, lock): nothing is left for anyone else to do. */
  finished: boolean
}

export function parseProgress(text: string | undefined): RunProgress | undefined {
  if (!text) return undefined
  try {
    const p = JSON.parse(text) as RunProgress
    return p && p.v === 1 && Array.isArray(p.hosts) ? p : undefined
  } catch {
    return undefined
  }
}

declare module '../host/context.js' {
  /** The switch strategy, saving progress around each host's switch and its undo (ProgressTracker.watch). */
  interface RunProgressHooks {
    watch(strategy: SwitchStrategy): SwitchStrategy
  }
}

export class ProgressTracker implements RunProgressHooks {
  private readonly p: RunProgress
  private strategy?: SwitchStrategy
  private tracked: Stage[] = []
  private warned = false

  constructor(
    private readonly ctx: RunContext,
    command: 'deploy' | 'rollback',
    started: Date,
    private readonly save: (p: RunProgress) => void,
    private readonly facts: { release: () => string | undefined; backup?: () => string | undefined }
  ) {
    this.p = {
      v: 1,
      command,
      started: started.toISOString(),
      actor: ctx.actor,
      stage: 'start',
      stages: [],
      undone: [],
      saved: {},
      hosts: [],
      verified: false,
      finished: false
    }
  }

  /** Saves what the run has done so far. Never throws: a run is not stopped by its bookkeeping. */
  checkpoint(): void {
    const p = this.p
    p.lock = this.ctx.lock
    p.release = this.ctx.lock ? this.facts.release() : undefined
    p.backup = this.facts.backup?.()
    for (const st of this.tracked) if (st.save && p.stages.includes(st.name)) p.saved[st.name] = st.save()
    for (const h of p.hosts) {
      const s = this.ctx.sessions.find(x => x.host.name === h.name)
      if (s && h.switched && this.strategy?.save) h.strategy = this.strategy.save(s)
    }
    try {
      this.save(p)
    } catch (e) {
      if (!this.warned) this.ctx.log.warn(`could not save the run's progress: ${errorMessage(e)}`)
      this.warned = true
    }
  }

  private host(s: HostSession): HostProgress {
    let h = this.p.hosts.find(x => x.name === s.host.name)
    if (!h) {
      h = { name: s.host.name, previous: s.current ?? null, switched: false, restored: false }
      this.p.hosts.push(h)
    }
    return h
  }

  /** The stages, each saving progress when it starts, ends and is undone. */
  track(stages: Stage[]): Stage[] {
    this.tracked = stages
    return stages.map(stage => this.trackOne(stage))
  }

  private started(stage: Stage): void {
    this.p.stage = stage.name
    this.p.stages.push(stage.name)
    this.checkpoint()
  }

  private finished(stage: Stage, c: RunContext): void {
    // preflight learned what serves on each host
    if (stage.name === 'preflight') for (const s of c.sessions) this.host(s).previous = s.current ?? null
    if (stage.name === 'verify') this.p.verified = true
    this.checkpoint()
  }

  private undone(stage: Stage): void {
    if (!this.p.undone.includes(stage.name)) this.p.undone.push(stage.name)
    this.checkpoint()
  }

  private trackOne(stage: Stage): Stage {
    if (stage.scope === 'each-host') {
      const { begin, end, undo } = stage
      // undone once every host it started on (with something to undo) is
      const ran = new Set<HostSession>()
      const back = new Set<HostSession>()
      const tracked: HostStage = {
        ...stage,
        begin: async c => {
          this.started(stage)
          await begin?.call(stage, c)
        },
        run: (c, s) => {
          ran.add(s)
          return stage.run(c, s)
        },
        end: async (c, ok) => {
          await end?.call(stage, c, ok)
          if (ok) this.finished(stage, c)
        },
        ...(undo
          ? {
              undo: async (c: RunContext, s: HostSession, info: UndoInfo) => {
                await undo.call(stage, c, s, info)
                back.add(s)
                if ([...ran].every(h => back.has(h) || stage.needsUndo?.(h) === false)) this.undone(stage)
                else this.checkpoint()
              }
            }
          : {})
      }
      return tracked
    }
    const { undo } = stage
    return {
      ...stage,
      run: async (c: RunContext) => {
        this.started(stage)
        await stage.run(c)
        this.finished(stage, c)
      },
      ...(undo
        ? {
            undo: async (c: RunContext, info: UndoInfo) => {
              await undo.call(stage, c, info)
              this.undone(stage)
            }
          }
        : {})
    }
  }

  /** The strategy, saving progress around each host's switch and its undo. */
  watch(strategy: SwitchStrategy): SwitchStrategy {
    this.strategy = strategy
    this.p.strategy = strategy.name
    return {
      ...strategy,
      activate: async (c, s, release, stage) => {
        const h = this.host(s)
        h.switched = true
        h.restored = false
        this.checkpoint()
        try {
          await strategy.activate(c, s, release, stage)
        } finally {
          this.checkpoint()
        }
      },
      restore: async (c, s, release, stage) => {
        await strategy.restore(c, s, release, stage)
        this.host(s).restored = true
        this.checkpoint()
      }
    }
  }

  /** The run recorded itself: whoever reads the progress has nothing left to do. */
  finish(): void {
    this.p.finished = true
    this.checkpoint()
  }
}
