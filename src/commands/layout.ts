/** Where things live under the deploy root on every host (README "Server layout"). */
export class Layout {
  readonly releases: string
  readonly current: string
  readonly shared: string
  readonly meta: string
  readonly lock: string
  readonly history: string
  readonly hostLog: string

  constructor(readonly root: string) {
    const r = root.replace(/\/+$/, '')
    this.releases = `${r}/releases`
    this.current = `${r}/current`
    this.shared = `${r}/shared`
    this.meta = `${r}/.safe-deploy`
    this.lock = `${r}/.safe-deploy/lock`
    this.history = `${r}/.safe-deploy/history.jsonl`
    this.hostLog = `${r}/.safe-deploy/deploy.log`
  }

  release(id: string): string {
    return `${this.releases}/${id}`
  }
}
