// How both stores page through executions, newest first. A list of one state
// other than SUCCEEDED, or of no state, walks an index and fills its pages.
// SUCCEEDED is left out of the state indexes (it is most of the history), so a
// SUCCEEDED page walks a window of UNINDEXED_LIST_WINDOW seq values instead: a
// page may come back short while the next one starts below the window. A list
// by label walks the executions that carry its first label (in key order),
// LABEL_LIST_WINDOW of them per page, and filters them by the rest.
import type { Awaitable, Tx } from "./store.js";

/** How many rows a SUCCEEDED page may walk. */
export const UNINDEXED_LIST_WINDOW = 10_000;

/**
 * How many executions with its first label a page by label may walk: each is
 * a read of the execution's row, so fewer than a SUCCEEDED walk (a few ms
 * on SQLite when nearly none match).
 */
export const LABEL_LIST_WINDOW = 1_000;

type Rows<R> = Awaitable<R[]>;

/** A list's labels as [key, value] pairs, in key order. */
export function labelsInKeyOrder(labels: Record<string, string> | undefined): [string, string][] {
  return Object.entries(labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

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
   * The lowest seq of the LABEL_LIST_WINDOW newest executions below `before`
   * labelled `key`=`value`, or null when there are fewer.
   */
  labelWindowFloor(key: string, value: string, before: number): Awaitable<number | null>;
  /**
   * Executions labelled `key`=`value` with seq in [floor, before) that also
   * carry every label of `others` (a JSON object) and match the list's task
   * and state.
   */
  labelled(key: string, value: string, others: string, before: number, floor: number, limit: number): Rows<R>;
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
  const labels = labelsInKeyOrder(params.labels);
  if (labels.length > 0) {
    const [[key, value], ...others] = labels as [[string, string], ...[string, string][]];
    // The window first (an index-only walk), so that the page's own walk stops as soon as it is full.
    const floor = await queries.labelWindowFloor(key, value, before);
    rows = await queries.labelled(key, value, JSON.stringify(Object.fromEntries(others)), before, floor ?? 0, limit + 1);
    const records = rows.slice(0, limit).map(toRecord);
    return { records, nextBeforeSeq: rows.length > limit ? records[records.length - 1]!.seq : floor };
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
