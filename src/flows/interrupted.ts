/**
 * Finishing a run whose process was killed (the runner SIGKILLs a cancelled Action's main step 10 s after its
 * SIGINT), from the progress it saved (src/pipeline/progress.ts): the Action's post step.
 *
 * Only while the lock is still the run's own: put the previous release back, with the configured switch
 * strategy's own undo, on every host the run switched and did not verify; check it; append a history line that
 * marks the release interrupted (and bad, for a deploy); release the lock; say what was done.
 */
import { appendHistory, appendHostLog, parseKeyValues, readHistory } from '../commands/release.js'
import { releaseLock, renewLock } from '../commands/lock.js'
import { combine } from '../commands/command.js'
import { parseHistory, type HistoryEntry } from '../release/history.js'
import {
  closeAll,
  connectAll,
  lockSessionOf,
  primaryOf,
  runOn,
  type HostSession,
  type RunContext
} from '../host/context.js'
import { errorMessage } from '../core/errors.js'
import { removeReleaseDirs } from '../host/hook.js'
import { hasChecks } from '../pipeline/checks.js'
import { verifyRestored } from '../pipeline/stages.js'
import { strategyFor } from '../pipeline/switch.js'
import type { RunProgress } from '../pipeline/progress.js'
import { migrateStage, type MigrationState } from '../pipeline/migrate.js'

export interface InterruptedOutcome {
  /** Everything that had to be done was done. */
  ok: boolean
  /** One sentence per thing done or found, for the log, the job summary and the annotation. */
  done: string[]
  /** What a person must look at (set when ok is false). */
  problem?: string
}

/**
 * Whether a saved progress leaves work for the post step: the run held the lock and did not record itself.
 * `token` is the lock token the run saved last: empty once the run released its lock, which it does after
 * recording itself.
 */
export function needsFinishing(p: RunProgress | undefined, token?: string): p is RunProgress {
  return !!p && !p.finished && !!p.lock && (token === undefined || token === p.lock.token)
}

export async function finishInterrupted(ctx: RunContext, p: RunProgress): Promise<InterruptedOutcome> {
  const done: string[] = []
  const say = (line: string, host?: string) => {
    ctx.log.info(line, host)
    done.push(host ? `${host}: ${line}` : line)
  }
  const lock = p.lock
  if (!lock) return { ok: true, done }
  ctx.log.setStage('post')
  ctx.log.info(
    `the ${p.command} started ${p.started} was stopped during ${p.stage} before it finished; finishing it`
  )
  try {
    await connectAll(ctx)
  } catch (e) {
    return {
      ok: false,
      done,
      problem: `could not connect to finish the interrupted ${p.command}: ${errorMessage(e)}; run \`safe-deploy status\`, then \`safe-deploy lock release\` and a deploy or rollback`
    }
  }
  try {
    // the lock host: the primary, or the config's primary when the selection left it out
    const primary = lockSessionOf(ctx)
    // Act only on what is still ours: a lock that expired and was taken, or released by a person, is not.
    const renewed = parseKeyValues(
      (
        await runOn(ctx, primary, renewLock(primary.layout, lock, Math.ceil(ctx.config.lock.ttl / 1000)), {
          stage: 'post'
        })
      ).stdout
    ).get('STATE')?.[0]
    if (renewed !== 'renewed') {
      return {
        ok: false,
        done,
        problem: `the deploy lock on ${primary.host.name} is no longer this run's (another run took it, or it was released): changed nothing; check \`safe-deploy status\``
      }
    }

    const release = p.release
    const problems: string[] = []
    // The database goes back first, as in a rollback: the previous release restarts against its own schema.
    const migration = migrationToUndo(ctx, p)
    const db: MigrationState | undefined = migration && { ...migration }
    if (db && release) {
      try {
        await migrateStage(
          () => release,
          () => p.backup,
          db
        ).undo?.(ctx, { live: true })
        if (db.database === 'restored') say(`database restored from the pre-deploy backup ${p.backup}`)
        else if (db.database === 'down') say(`database migrated down to ${db.revision || '(none)'}`)
        else if (db.database === 'left')
          say('database left as the migration made it (rollback.database: none)')
        else if (db.database) say(`database: ${db.database}`)
      } catch (e) {
        problems.push(`could not put the database back: ${errorMessage(e)}`)
      }
    }
    const toRestore = p.verified ? [] : p.hosts.filter(h => h.switched && !h.restored)
    if (p.verified && release) say(`${release} had passed verify; it stays live`)
    if (release && toRestore.length) {
      const strategy = strategyFor(ctx)
      const restored: HostSession[] = []
      await Promise.all(
        toRestore.map(async h => {
          const s = ctx.sessions.find(x => x.host.name === h.name)
          if (!s) {
            problems.push(`${h.name} is not in the config any more: it may still serve ${release}`)
            return
          }
          s.current = h.previous ?? undefined
          if (!strategy.resume) {
            problems.push(
              `switch.strategy ${strategy.name} cannot be undone from another process: ${h.name} may still serve ${release}`
            )
            return
          }
          strategy.resume(s, h.strategy)
          try {
            await strategy.restore(ctx, s, release, 'post')
            if (h.previous) {
              say(`put back releases/${h.previous} (this run had switched to ${release})`, h.name)
              restored.push(s)
            } else {
              say(
                `there was no previous release (a first deploy): took ${release} out of \`current\`; the app may still run it, stop it by hand`,
                h.name
              )
            }
          } catch (e) {
            problems.push(
              `could not put back ${h.previous ? `releases/${h.previous}` : 'the host'} on ${h.name}: ${errorMessage(e)}`
            )
          }
        })
      )
      if (restored.length && !problems.length) {
        try {
          await verifyRestored(ctx, restored, 'post')
          // verifyRestored logged it; the summary says it too
          if (hasChecks(ctx))
            done.push(
              `the previous release passes its checks on ${restored.map(s => s.host.name).join(', ')}`
            )
        } catch (e) {
          problems.push(`the previous release fails its checks after it was put back: ${errorMessage(e)}`)
        }
      }
    } else if (release && !p.verified && p.hosts.some(h => h.switched)) {
      const back = p.hosts.filter(h => h.switched)
      say(`the run had already put back what served before on ${back.map(h => h.name).join(', ')}`)
      // it may have been killed while checking it: check it once more
      const sessions = ctx.sessions.filter(s => back.some(h => h.name === s.host.name && h.previous))
      for (const s of sessions) s.current = back.find(h => h.name === s.host.name)?.previous ?? undefined
      try {
        await verifyRestored(ctx, sessions, 'post')
      } catch (e) {
        problems.push(`the previous release fails its checks: ${errorMessage(e)}`)
      }
    } else if (release && !p.verified) {
      say(`${release} never went live on any host; nothing to put back`)
      // a deploy's new release that never went live goes, as the deploy stage's own undo does it
      if (p.command === 'deploy' && p.stages.includes('deploy') && !p.undone.includes('deploy')) {
        await Promise.all(
          ctx.sessions.map(async s => {
            try {
              await removeReleaseDirs(ctx, s, [release], 'post')
              say(`removed the unfinished release ${release}`, s.host.name)
            } catch (e) {
              ctx.log.warn(
                `could not remove the unfinished release ${release}: ${errorMessage(e)}`,
                s.host.name
              )
            }
          })
        )
      }
    }
    // History (unless the run wrote its own line before it was killed), this log, the lock.
    const history = parseHistory(
      (await runOn(ctx, primaryOf(ctx), readHistory(primaryOf(ctx).layout), { stage: 'post' })).stdout
    )
    const recorded = history.some(e => e.release === release && e.started === p.started)
    const finished = new Date()
    const entry: HistoryEntry | undefined =
      release && !recorded
        ? {
            type: p.command,
            release,
            previous: p.hosts.find(h => h.name === primaryOf(ctx).host.name)?.previous ?? null,
            commit: p.actor.commit ?? null,
            actor: p.actor.who,
            run: p.actor.run ?? null,
            status: p.verified ? 'success' : 'interrupted',
            verified: p.verified,
            bad: !p.verified && p.command === 'deploy' ? true : undefined,
            backup: p.backup ?? null,
            revision: db?.revision ?? null,
            migrated: db?.migrated || undefined,
            database: db?.database ?? null,
            started: p.started,
            finished: finished.toISOString(),
            duration_s: Math.round((finished.getTime() - Date.parse(p.started)) / 100) / 10,
            hosts: p.hosts.map(h => h.name),
            error: p.verified
              ? null
              : `${p.stage}: interrupted: the run was stopped before it finished; finished by the Action's post step${problems.length ? `: ${ctx.log.redactor.redact(problems.join('; '))}` : ''}`
          }
        : undefined
    if (entry && !p.verified)
      say(`marked ${release} interrupted${entry.bad ? ' and bad' : ''} in history: rollbacks skip it`)
    const text = () => ctx.log.lines.join('\n')
    const all = ctx.sessions.includes(primary) ? ctx.sessions : [...ctx.sessions, primary]
    const results = await Promise.allSettled(
      all.map(s =>
        runOn(
          ctx,
          s,
          combine('record history and log; release the lock', [
            ...(entry && s !== ctx.lockSession ? [appendHistory(s.layout, entry)] : []),
            ...(s !== ctx.lockSession ? [appendHostLog(s.layout, text())] : []),
            ...(s === primary ? [releaseLock(s.layout, lock.token)] : [])
          ]),
          { stage: 'post' }
        )
      )
    )
    const mine = results[all.indexOf(primary)]
    const state =
      mine?.status === 'fulfilled' ? parseKeyValues(mine.value.stdout).get('STATE')?.[0] : undefined
    if (state === 'released') say('lock released', primary.host.name)
    else
      problems.push(
        `could not release the lock on ${primary.host.name} (${mine?.status === 'rejected' ? errorMessage(mine.reason) : `lock state ${state ?? 'unknown'}`}); run \`safe-deploy lock release\``
      )
    for (const [i, r] of results.entries())
      if (r.status === 'rejected')
        problems.push(`could not record history on ${all[i]?.host.name}: ${errorMessage(r.reason)}`)
    return problems.length
      ? { ok: false, done, problem: `${problems.join('; ')}: a person must look (\`safe-deploy status\`)` }
      : { ok: true, done }
  } finally {
    await closeAll(ctx)
  }
}

/** The migrate stage's saved state when this run's migration started, was not undone and nothing was verified. */
function migrationToUndo(ctx: RunContext, p: RunProgress): MigrationState | undefined {
  if (p.verified || p.command !== 'deploy' || !ctx.config.stages.migrate) return undefined
  if (!p.stages.includes('migrate') || p.undone.includes('migrate')) return undefined
  const saved = p.saved?.migrate as MigrationState | undefined
  return saved?.started ? saved : undefined
}
