// How both stores page through executions, newest first. A list of one state
// other than SUCCEEDED, or of no state, walks an index and fills its pages.
// SUCCEEDED is left out of the state indexes (it is most of the history), so a
// SUCCEEDED page walks a window of UNINDEXED_LIST_WINDOW seq values instead: a
// page may come back short while the next one starts below the window. A list
// by label walks the executions that carry its first label (in key order),
// UNINDEXED_LIST_WINDOW of them per page, and filters them by the rest.
import type { Awaitable, Tx } from "./store.js";

/** How many rows a page that no index narrows to its filter may walk. */
export const UNINDEXED_LIST_WINDOW = 10_000;

type Rows<R> = Awaitable<R[]>;

/** The store's queries for one list; each returns at most `limit` rows, newest first. */
export interface ListQueries<R> {
  /** The largest seq in use, or null for an empty table. */
  newestSeq(): Awaitable<number | null>;
  /** The smallest seq in use, or null for an empty table. */
  oldestSeq(): Awaitable<number | null>;
  /** SUCCEEDED executions with seq in [floor, top). */
  succeeded(top: number, floor: number, limit: number): Rows<R>;
  /** Executions in `state` with seq below `before`. */
  inState(state: number, before: number, limit: number): Rows<R>;
  /** Executions with seq below `before`. */
  all(before: number, limit: number): Rows<R>;
  /**
   * Of the UNINDEXED_LIST_WINDOW newest executions below `before` labelled
   * `key`=`value`, those that also carry every label of `others` (a JSON
   * object) and match the list's task and state.
   */
  labelled(key: string, value: string, others: string, before: number, limit: number): Rows<R>;
  /** The lowest seq of that window when it is full, else null. */
  labelWindowFloor(key: string, value: string, before: number): Awaitable<number | null>;
}

type Page = Awaited<ReturnType<Tx["executionList"]>>;

export async function listPage<R>(
  params: Parameters<Tx["executionList"]>[0],
  succeededState: number,
  queries: ListQueries<R>,
  toRecord: (row: R) => Page["records"][number],
): Promise<Page> {
  const { state, limit } = params;
  const before = params.beforeSeq ?? Number.MAX_SAFE_INTEGER;
  // One row more than the page tells whether another page follows.
  let rows: R[];
  let windowFloor: number | null = null;
  const labels = Object.entries(params.labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (labels.length > 0) {
    const [[key, value], ...others] = labels as [[string, string], ...[string, string][]];
    rows = await queries.labelled(key, value, JSON.stringify(Object.fromEntries(others)), before, limit + 1);
    const records = rows.slice(0, limit).map(toRecord);
    if (rows.length > limit) return { records, nextBeforeSeq: records[records.length - 1]!.seq };
    return { records, nextBeforeSeq: await queries.labelWindowFloor(key, value, before) };
  }
  if (state === succeededState) {
    const top = before === Number.MAX_SAFE_INTEGER ? ((await queries.newestSeq()) ?? 0) + 1 : before;
    windowFloor = Math.max(0, top - UNINDEXED_LIST_WINDOW);
    rows = await queries.succeeded(top, windowFloor, limit + 1);
  } else if (state !== undefined) {
    rows = await queries.inState(state, before, limit + 1);
  } else {
    rows = await queries.all(before, limit + 1);
  }
  const records = rows.slice(0, limit).map(toRecord);
  if (rows.length > limit) return { records, nextBeforeSeq: records[records.length - 1]!.seq };
  if (windowFloor === null) return { records, nextBeforeSeq: null };
  // A window walked to its floor: the next page walks the window below it, if any rows are there.
  const lowest = await queries.oldestSeq();
  return { records, nextBeforeSeq: lowest !== null && lowest < windowFloor ? windowFloor : null };
}
