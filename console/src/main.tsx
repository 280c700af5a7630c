// The Reprise console: the executions page and an execution's page, over the
// coordinator's JSON API. Routes live in the URL's hash (#/executions?…,
// #/executions/ID), so that the coordinator serves one page for all of them.
import { render } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiError, cancelExecution, getExecution, listExecutions, listTasks, listWorkers, rerunExecution, token, watchExecution } from "./api.js";
import type { Execution, TaskSummary, Worker } from "./api.js";
import { clockTime, describePolicy, duration, failureLine, isRetrying, lastFailure, ms, payloadText, relative, ruleName, shortState, waitRule } from "./format.js";
import { Timeline } from "./timeline.js";

const STATES = ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "ABANDONED", "TIMED_OUT", "CANCELLED"];
const RERUNNABLE = new Set(["FAILED", "ABANDONED", "TIMED_OUT", "CANCELLED"]);
const OPEN = new Set(["PENDING", "RUNNING"]);
/** How many of the soonest waiting executions "Retrying now" shows. */
const RETRYING_SHOWN = 200;

/** The current time, ticking every second, for ages and countdowns. */
function useNow(): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  return now;
}

/** The route in the hash: its path and its query. */
function useRoute(): { path: string; query: URLSearchParams } {
  const read = () => {
    const [path, query] = (location.hash.slice(1) || "/executions").split("?");
    return { path: path || "/executions", query: new URLSearchParams(query ?? "") };
  };
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const changed = () => setRoute(read());
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return route;
}

/** Names the page in the browser's tab and for screen readers. */
function useTitle(title: string): void {
  useEffect(() => {
    document.title = `${title} · Reprise`;
  }, [title]);
}

function StateBadge({ state }: { state: string }) {
  const name = shortState(state);
  return <span class={`badge state-${name.toLowerCase()}`}>{name}</span>;
}

/** Asks for the bearer token the coordinator wants; kept for this tab only. */
function TokenForm({ error, onToken }: { error: ApiError; onToken: () => void }) {
  const [value, setValue] = useState("");
  return (
    <form
      class="panel token"
      onSubmit={(event) => {
        event.preventDefault();
        token.set(value.trim());
        onToken();
      }}
    >
      <h2>{error.status === 403 ? "This token may not read executions" : "The coordinator needs a token"}</h2>
      <p>{error.message}. Paste a caller or admin token from the coordinator's --auth-tokens file. It is kept in this tab only and sent as a header.</p>
      <label for="token">Bearer token</label>
      <input id="token" type="password" autocomplete="off" value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} required />
      <button type="submit">Use this token</button>
    </form>
  );
}

function Problem({ error, retry }: { error: unknown; retry: () => void }) {
  if (error instanceof ApiError && (error.status === 401 || error.status === 403)) return <TokenForm error={error} onToken={retry} />;
  const message = error instanceof ApiError ? `${error.code}: ${error.message}` : String(error);
  return (
    <div class="panel problem" role="alert">
      <p>{message}</p>
      <button onClick={retry}>Try again</button>
    </div>
  );
}

/** A page whose data has not come: why (with a way to try again), or that it is loading. */
function NotYet({ error, retry }: { error: unknown; retry: () => void }) {
  return error !== null ? (
    <main>
      <Problem error={error} retry={retry} />
    </main>
  ) : (
    <main aria-busy="true">Loading…</main>
  );
}

function ExecutionsPage({ query }: { query: URLSearchParams }) {
  const now = useNow();
  const task = query.get("task") ?? "";
  const state = query.get("state") ?? "";
  const label = query.get("label") ?? "";
  const retrying = query.get("view") === "retrying";
  const [pages, setPages] = useState<{ executions: Execution[]; next: string | undefined }>({ executions: [], next: undefined });
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const [attempt, setAttempt] = useState(0);
  const [notFound, setNotFound] = useState<string | null>(null);

  /** Opens the execution with this id, or else with this idempotency key. */
  const find = async (text: string) => {
    setNotFound(null);
    try {
      location.hash = `#/executions/${encodeURIComponent((await getExecution(text)).id)}`;
      return;
    } catch (caught) {
      if (!(caught instanceof ApiError) || (caught.status !== 404 && caught.status !== 400)) {
        setError(caught);
        return;
      }
    }
    try {
      const [byKey] = (await listExecutions({ idempotencyKey: text, pageSize: 1 })).executions ?? [];
      if (byKey) location.hash = `#/executions/${encodeURIComponent(byKey.id)}`;
      else setNotFound(text);
    } catch (caught) {
      setError(caught);
    }
  };

  const load = useCallback(
    async (pageToken?: string) => {
      setLoading(true);
      try {
        const executions: Execution[] = [];
        let next = pageToken;
        if (retrying) {
          // The soonest retries may sit behind any number of newer PENDING
          // executions: read them all, as `reprise ls --retrying` does (up to
          // 100 pages of 1000), and sort here.
          for (let read = 0; read < 100; read++) {
            const page = await listExecutions({ task, state: "PENDING", label, pageSize: 1000, pageToken: next });
            executions.push(...(page.executions ?? []).filter(isRetrying));
            next = page.nextPageToken;
            if (!next) break;
          }
          executions.sort((a, b) => (ms(a.nextAttemptAt) ?? 0) - (ms(b.nextAttemptAt) ?? 0));
          setPages({ executions, next: undefined });
        } else {
          // A page may come back short while more follow (a walk of SUCCEEDED
          // or of a label reads a bounded window): read on, up to 10 pages, until 50 are shown.
          for (let read = 0; read < 10; read++) {
            const page = await listExecutions({ task, state, label, pageSize: 50, pageToken: next });
            executions.push(...(page.executions ?? []));
            next = page.nextPageToken;
            if (!next || executions.length >= 50) break;
          }
          setPages((previous) => ({ executions: pageToken ? [...previous.executions, ...executions] : executions, next }));
        }
        setError(null);
      } catch (caught) {
        setError(caught);
      } finally {
        setLoading(false);
      }
    },
    [task, state, label, retrying],
  );
  useEffect(() => {
    void load();
  }, [load, attempt]);

  const navigate = (changes: Record<string, string>) => {
    const next = new URLSearchParams(query);
    for (const [key, value] of Object.entries(changes)) value ? next.set(key, value) : next.delete(key);
    location.hash = `#/executions?${next}`;
  };
  useTitle(retrying ? "Retrying now" : "Executions");
  // Retrying: the soonest, sorted when loaded; a table of thousands helps nobody.
  const rows = retrying ? pages.executions.slice(0, RETRYING_SHOWN) : pages.executions;

  return (
    <main>
      <div class="toolbar">
        <h1 class="sr-only">{retrying ? "Retrying now" : "Executions"}</h1>
        <nav class="tabs" aria-label="Views">
          <a aria-current={retrying ? undefined : "page"} href="#/executions">
            All executions
          </a>
          <a aria-current={retrying ? "page" : undefined} href="#/executions?view=retrying">
            Retrying now
          </a>
        </nav>
        {/* Uncontrolled, and made anew for each route: the clock re-renders every second. */}
        <form
          key={query.toString()}
          class="filters"
          role="search"
          aria-label="Filter executions"
          onSubmit={(event) => {
            event.preventDefault();
            const data = new FormData(event.currentTarget);
            const id = String(data.get("id") ?? "").trim();
            if (id) void find(id);
            else navigate({ task: String(data.get("task") ?? "").trim(), state: String(data.get("state") ?? ""), label: String(data.get("label") ?? "").trim() });
          }}
        >
          <label>
            Task
            <input name="task" defaultValue={task} placeholder="any task" />
          </label>
          {!retrying && (
            <label>
              State
              <select name="state" defaultValue={state}>
                <option value="">any state</option>
                {STATES.map((s) => (
                  <option value={s}>{s}</option>
                ))}
              </select>
            </label>
          )}
          <label>
            Label
            <input name="label" defaultValue={label} placeholder="key=value" />
          </label>
          <label>
            Id or idempotency key
            <input name="id" placeholder="open one execution" />
          </label>
          <button type="submit">Apply</button>
        </form>
      </div>
      {notFound !== null && (
        <p class="panel problem" role="alert">
          No execution has the id or idempotency key “{notFound}”.
        </p>
      )}
      {error !== null ? (
        <Problem error={error} retry={() => setAttempt((n) => n + 1)} />
      ) : (
        <div class="scroll">
          <table class="executions list">
            <caption class="sr-only">{retrying ? "Executions waiting for a retry, soonest first" : "Executions, newest first"}</caption>
            <thead>
              <tr>
                <th scope="col">Execution</th>
                <th scope="col">Task</th>
                <th scope="col">State</th>
                <th scope="col">Attempts</th>
                <th scope="col">Age</th>
                <th scope="col">Next / ended</th>
                <th scope="col">Last failure</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((e) => {
                const next = ms(e.nextAttemptAt);
                const finished = ms(e.finishedAt);
                const last = e.attempts?.at(-1);
                const rule = last && next !== null ? waitRule(last) : null;
                return (
                  <tr key={e.id} data-id={e.id}>
                    <td class="mono id-cell">
                      <a href={`#/executions/${encodeURIComponent(e.id)}`}>{e.id}</a>
                    </td>
                    <td>{e.task}</td>
                    <td>
                      <StateBadge state={e.state} />
                    </td>
                    <td class="num">{e.attempts?.length ?? 0}</td>
                    <td>{duration(now - ms(e.createdAt)!)}</td>
                    <td class="countdown">
                      {next !== null
                        ? `${relative(next, now) === "now" || next < now ? "due now" : `${last ? "retry" : "starts"} ${relative(next, now)}`}${rule ? ` · ${rule}` : ""}`
                        : finished !== null
                          ? `ended ${relative(finished, now)}`
                          : e.state === "EXECUTION_STATE_RUNNING"
                            ? "running"
                            : ""}
                    </td>
                    <td class="failure" title={lastFailure(e)}>
                      {lastFailure(e)}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {!error && !loading && rows.length === 0 && <p class="empty">{retrying ? "Nothing is waiting for a retry." : "No executions match."}</p>}
      {retrying && pages.executions.length > rows.length && (
        <p class="muted">
          The {RETRYING_SHOWN} soonest of {pages.executions.length.toLocaleString("en")} waiting; filter by task or label to see others.
        </p>
      )}
      <div class="more">
        {loading && <span aria-live="polite">Loading…</span>}
        {!loading && pages.next && <button onClick={() => void load(pages.next)}>Older executions</button>}
      </div>
    </main>
  );
}

function ExecutionPage({ id }: { id: string }) {
  const now = useNow();
  const [execution, setExecution] = useState<Execution | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [attempt, setAttempt] = useState(0);
  const [busy, setBusy] = useState(false);
  const [width, setWidth] = useState(900);
  const box = useRef<HTMLDivElement>(null);

  useEffect(() => {
    const measure = () => box.current && setWidth(box.current.clientWidth);
    measure();
    addEventListener("resize", measure);
    return () => removeEventListener("resize", measure);
  }, [execution !== null]);

  // Live: the watch stream sends the current state, then every change, and
  // ends after the terminal one; a re-run (or a dropped stream) opens it again.
  useEffect(() => {
    const controller = new AbortController();
    let stopped = false;
    (async () => {
      while (!stopped) {
        try {
          await watchExecution(id, (snapshot) => setExecution(snapshot), controller.signal);
          setError(null);
          return;
        } catch (caught) {
          if (controller.signal.aborted) return;
          if (caught instanceof ApiError && caught.status !== 0) {
            setError(caught);
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      }
    })();
    return () => {
      stopped = true;
      controller.abort();
    };
  }, [id, attempt]);

  const act = async (what: "cancel" | "rerun") => {
    const question = what === "cancel" ? "Cancel this execution? A pending one never runs; a running attempt is told to stop." : "Run this execution again? Its retry limit counts afresh.";
    if (!confirm(question)) return;
    setBusy(true);
    try {
      setExecution(await (what === "cancel" ? cancelExecution(id) : rerunExecution(id)));
      if (what === "rerun") setAttempt((n) => n + 1);
    } catch (caught) {
      alert(caught instanceof ApiError ? `${caught.code}: ${caught.message}` : String(caught));
    } finally {
      setBusy(false);
    }
  };

  useTitle(execution ? `${execution.task} ${shortState(execution.state)} ${id}` : `Execution ${id}`);
  if (error !== null || execution === null) return <NotYet error={error} retry={() => setAttempt((n) => n + 1)} />;
  const state = shortState(execution.state);
  const next = ms(execution.nextAttemptAt);
  const attempts = execution.attempts ?? [];
  const labels = Object.entries(execution.labels ?? {});
  // The latest failure's stack trace is shown open; earlier ones open on request.
  const lastFailed = attempts.filter((a) => a.failure).at(-1);
  return (
    <main>
      <p>
        <a href="#/executions">← Executions</a>
      </p>
      <header class="execution-header">
        <div>
          <h1>
            {execution.task} <StateBadge state={execution.state} />
          </h1>
          <p class="mono id">{execution.id}</p>
        </div>
        <div class="actions">
          {OPEN.has(state) && (
            <button class="danger" disabled={busy} onClick={() => void act("cancel")}>
              Cancel
            </button>
          )}
          {RERUNNABLE.has(state) && (
            <button disabled={busy} onClick={() => void act("rerun")}>
              Re-run
            </button>
          )}
        </div>
      </header>
      <dl class="facts">
        <dt>Created</dt>
        <dd>
          {clockTime(ms(execution.createdAt)!)} ({relative(ms(execution.createdAt)!, now)})
        </dd>
        {execution.finishedAt && (
          <>
            <dt>Ended</dt>
            <dd>
              {clockTime(ms(execution.finishedAt)!)}, after {duration(ms(execution.finishedAt)! - ms(execution.createdAt)!)}
            </dd>
          </>
        )}
        {next !== null && (
          <>
            <dt>Next attempt</dt>
            <dd class="countdown">
              attempt {attempts.length + 1} {next > now ? relative(next, now) : "due now"} ({clockTime(next)})
            </dd>
          </>
        )}
        <dt>Retry policy</dt>
        <dd>{describePolicy(execution.retryPolicy)}</dd>
        {execution.idempotencyKey && (
          <>
            <dt>Idempotency key</dt>
            <dd class="mono">{execution.idempotencyKey}</dd>
          </>
        )}
        {labels.length > 0 && (
          <>
            <dt>Labels</dt>
            <dd>
              {labels.map(([k, v]) => (
                <a class="label" href={`#/executions?${new URLSearchParams({ label: `${k}=${v}` })}`} title={`Executions labelled ${k}=${v}`}>
                  {k}={v}
                </a>
              ))}
            </dd>
          </>
        )}
        {execution.failure && (
          <>
            <dt>Failure</dt>
            <dd class="failure">{failureLine(execution.failure)}</dd>
          </>
        )}
      </dl>
      <section>
        <h2>Timeline</h2>
        <div ref={box} class="timeline-box">
          {attempts.length === 0 && next !== null ? <p class="empty">No attempt yet: the first is due {relative(next, now)}.</p> : <Timeline execution={execution} now={now} width={width} />}
        </div>
      </section>
      <section>
        <h2>Attempts</h2>
        <ol class="attempts">
          {attempts.map((a, i) => {
            const started = ms(a.startedAt)!;
            const finished = ms(a.finishedAt);
            const followed = attempts[i + 1] ? ms(attempts[i + 1]!.scheduledAt) : i === attempts.length - 1 ? next : null;
            const rule = ruleName(a);
            return (
              <li key={a.number} class="attempt" data-attempt={a.number}>
                <div class="attempt-head">
                  <strong>Attempt {a.number}</strong> <StateBadge state={a.state} />
                  <span class="muted">
                    {" "}
                    on {a.workerId || "a worker"}, started {clockTime(started)}, {finished === null ? `running for ${duration(now - started)}` : `took ${duration(finished - started)}`}
                  </span>
                </div>
                {a.failure && (
                  <details class="failure-detail" open={a === lastFailed}>
                    <summary class="failure">{failureLine(a.failure)}</summary>
                    {a.failure.stackTrace && <pre>{a.failure.stackTrace}</pre>}
                  </details>
                )}
                {rule && (
                  <p class="decision">
                    {followed !== null && followed !== undefined && finished !== null && ["backoff", "retry_after", "snooze", "budget"].includes(rule)
                      ? `Then waited ${duration(followed - finished)} (${rule}${a.retryComputedAt ? `; the delay rules said ${duration(ms(a.retryComputedAt)! - finished)}` : ""}).`
                      : `Then no retry: ${rule}.`}{" "}
                    {a.retryPolicy && <span class="muted">Decided under: {describePolicy(a.retryPolicy)}.</span>}
                  </p>
                )}
              </li>
            );
          })}
        </ol>
      </section>
      <section class="payloads">
        <div>
          <h2>Arguments</h2>
          <pre>{payloadText(execution.arguments) || "(empty)"}</pre>
        </div>
        {execution.result && (
          <div>
            <h2>Result</h2>
            <pre>{payloadText(execution.result)}</pre>
          </div>
        )}
      </section>
    </main>
  );
}

/** Loads `load()` once, then again every `everyMs`, with its error for Problem. */
function usePolled<T>(load: () => Promise<T>, everyMs: number): { data: T | null; error: unknown; retry: () => void } {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [round, setRound] = useState(0);
  useEffect(() => {
    let live = true;
    const run = () =>
      load().then(
        (value) => live && (setData(value), setError(null)),
        (caught: unknown) => live && setError(caught),
      );
    void run();
    const timer = setInterval(() => void run(), everyMs);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [round]);
  return { data, error, retry: () => setRound((n) => n + 1) };
}

const STATE_ORDER = ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "ABANDONED", "TIMED_OUT", "CANCELLED"];

function TasksPage() {
  const now = useNow();
  const { data, error, retry } = usePolled(listTasks, 5000);
  useTitle("Tasks");
  if (error !== null || data === null) return <NotYet error={error} retry={retry} />;
  const tasks = data.tasks ?? [];
  return (
    <main>
      <h1>Tasks</h1>
      {tasks.length === 0 && <p class="empty">No task has been declared or submitted yet.</p>}
      <div class="scroll">
        <table class="executions tasks">
          <caption class="sr-only">Every task, with its declared policy, its executions by state and its workers</caption>
          <thead>
            <tr>
              <th scope="col">Task</th>
              <th scope="col">Declared policy</th>
              <th scope="col">Executions</th>
              <th scope="col">Due now</th>
              <th scope="col">Last hour</th>
              <th scope="col">Workers</th>
            </tr>
          </thead>
          <tbody>
            {tasks.map((t: TaskSummary) => {
              const counts = new Map((t.executions ?? []).map((row) => [shortState(row.state), row.count]));
              const due = Number(t.due ?? 0);
              const seen = ms(t.workerLastSeenAt);
              return (
                <tr key={t.name} data-task={t.name}>
                  <td>
                    <a href={`#/executions?task=${encodeURIComponent(t.name)}`}>{t.name}</a>
                    {t.noWorker && (
                      <div>
                        <span class="badge state-failed" title="Executions are due and no worker was seen for this task in the last minute">
                          NO WORKER
                        </span>
                      </div>
                    )}
                  </td>
                  <td>
                    {t.declaration ? (
                      <>
                        {describePolicy(t.declaration.retryPolicy)}
                        {t.declaration.timeout && <div class="muted">timeout {duration(Number.parseFloat(t.declaration.timeout) * 1000)}</div>}
                        {t.declaration.retryBudget?.retriesPerSecond && (
                          <div class="muted">
                            budget {t.declaration.retryBudget.retriesPerSecond}/s, burst {t.declaration.retryBudget.burst ?? 1}
                          </div>
                        )}
                      </>
                    ) : (
                      <span class="muted">not declared</span>
                    )}
                  </td>
                  <td>
                    <div class="counts">
                      {STATE_ORDER.filter((s) => counts.has(s)).map((s) => (
                        <a class="count" href={`#/executions?task=${encodeURIComponent(t.name)}&state=${s}`}>
                          <StateBadge state={s} /> {Number(counts.get(s)).toLocaleString("en")}
                        </a>
                      ))}
                    </div>
                  </td>
                  <td class="num">{due > 10_000 ? "10,000+" : due.toLocaleString("en")}</td>
                  <td class="last-hour">
                    {(t.failuresLastHour ?? 0).toLocaleString("en")} failed, {(t.retriesLastHour ?? 0).toLocaleString("en")} retried
                    {(t.frequentFailures ?? []).map((f) => (
                      <div class="failure">
                        {f.type} × {f.count.toLocaleString("en")}
                      </div>
                    ))}
                  </td>
                  <td>
                    {t.workers ?? 0} seen{seen !== null ? `, last ${relative(seen, now)}` : ""}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </main>
  );
}

function WorkersPage() {
  const now = useNow();
  const { data, error, retry } = usePolled(listWorkers, 5000);
  useTitle("Workers");
  if (error !== null || data === null) return <NotYet error={error} retry={retry} />;
  const workers = data.workers ?? [];
  return (
    <main>
      <h1>Workers</h1>
      <p class="muted">Every worker that declared tasks or asked for work in the last 7 days, most recently seen first.</p>
      {workers.length === 0 ? (
        <p class="empty">No worker has been seen in the last 7 days.</p>
      ) : (
        <div class="scroll">
          <table class="executions workers">
            <caption class="sr-only">Workers seen lately</caption>
            <thead>
              <tr>
                <th scope="col">Worker</th>
                <th scope="col">Last seen</th>
                <th scope="col">Tasks</th>
              </tr>
            </thead>
            <tbody>
              {workers.map((w: Worker) => (
                <tr key={w.id} data-worker={w.id}>
                  <td class="mono">{w.id || "(no id)"}</td>
                  <td>{w.lastSeenAt ? relative(ms(w.lastSeenAt)!, now) : ""}</td>
                  <td>
                    {(w.tasks ?? []).map((task) => (
                      <a class="label" href={`#/executions?task=${encodeURIComponent(task)}`}>
                        {task}
                      </a>
                    ))}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </main>
  );
}

function App() {
  const { path, query } = useRoute();
  const match = /^\/executions\/(.+)$/.exec(path);
  const here = match ? "" : path === "/executions" && query.get("view") === "retrying" ? "/retrying" : path;
  const current = (page: string) => (here === page ? "page" : undefined);
  return (
    <>
      <nav class="top" aria-label="Console">
        <a class="brand" href="#/executions">
          Reprise
        </a>
        <a href="#/executions" aria-current={current("/executions")}>
          Executions
        </a>
        <a href="#/executions?view=retrying" aria-current={current("/retrying")}>
          Retrying now
        </a>
        <a href="#/tasks" aria-current={current("/tasks")}>
          Tasks
        </a>
        <a href="#/workers" aria-current={current("/workers")}>
          Workers
        </a>
        {token.get() && (
          <button
            class="link"
            onClick={() => {
              token.clear();
              location.reload();
            }}
          >
            Forget token
          </button>
        )}
      </nav>
      {match ? (
        <ExecutionPage key={match[1]} id={decodeURIComponent(match[1]!)} />
      ) : path === "/tasks" ? (
        <TasksPage />
      ) : path === "/workers" ? (
        <WorkersPage />
      ) : (
        <ExecutionsPage query={query} />
      )}
    </>
  );
}

render(<App />, document.getElementById("app")!);
