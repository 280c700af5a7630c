// How coordinator nodes on one PostgreSQL database wake each other: LISTEN on
// one dedicated connection per node, NOTIFY through the pool. A NOTIFY takes a
// lock that serializes commits across the whole database, so news is
// coalesced: at most one NOTIFY in flight per node, carrying everything that
// happened meanwhile. Receivers re-read the store; a lost notification delays
// work and watches until the next re-check (recheckMs), never strands them.
import { randomBytes } from "node:crypto";
import pg from "pg";
import type { PeerNews, Peers } from "../store.js";

export const CHANNEL = "reprise";

/** NOTIFY payloads must stay under 8000 bytes. */
const MAX_PAYLOAD = 7500;

/** How often a node re-reads the store for work that came due elsewhere. */
export const RECHECK_MS = 1000;

/** On the wire: the sending node, changed execution seqs, and task -> due time. */
interface Message {
  n: string;
  e?: number[];
  d?: Record<string, number>;
}

export interface PostgresPeersOptions {
  /** Opens the dedicated LISTEN connection. */
  connect: () => pg.Client;
  /** Sends one NOTIFY through the pool. */
  notify: (payload: string) => Promise<unknown>;
  onWarning: (message: string) => void;
  /** Told when the LISTEN connection is lost (false) and back (true). */
  onConnected: (connected: boolean) => void;
}

export class PostgresPeers implements Peers {
  readonly recheckMs = RECHECK_MS;
  /** This node's name on the wire, so that it ignores its own news. */
  private readonly node = randomBytes(6).toString("base64url");
  private readonly listeners: ((news: PeerNews | null) => void)[] = [];
  private client: pg.Client | null = null;
  private pending: PeerNews | null = null;
  private sending = false;
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private connectedOnce = false;

  constructor(private readonly options: PostgresPeersOptions) {}

  /** Connects and LISTENs; after a loss it keeps trying every half second until closed. */
  async start(): Promise<void> {
    const client = this.options.connect();
    client.on("error", () => this.lost(client));
    client.on("end", () => this.lost(client));
    client.on("notification", (message) => {
      if (message.channel === CHANNEL && message.payload) this.received(message.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    // The connection this one replaces (reconnect(), or a reconnect that raced it) is closed; its end is not a loss.
    const replaced = this.client;
    this.client = client;
    replaced?.end().catch(() => undefined);
    this.options.onConnected(true);
    // Anything told while this node was not listening is lost: look again.
    if (this.connectedOnce) for (const listener of this.listeners) listener(null);
    this.connectedOnce = true;
  }

  listen(listener: (news: PeerNews | null) => void): void {
    this.listeners.push(listener);
  }

  tell(news: PeerNews): void {
    if (this.closed) return;
    if (this.pending === null) this.pending = { executions: [], due: new Map() };
    this.pending.executions.push(...news.executions);
    for (const [task, at] of news.due) this.pending.due.set(task, Math.min(at, this.pending.due.get(task) ?? Infinity));
    if (!this.sending) void this.send();
  }

  private async send(): Promise<void> {
    this.sending = true;
    try {
      while (this.pending !== null && !this.closed) {
        const news = this.pending;
        this.pending = null;
        for (const payload of this.payloads(news)) {
          await this.options.notify(payload).catch((error: unknown) => this.options.onWarning(`telling the other nodes failed; they find the work at their next re-check: ${String(error)}`));
        }
      }
    } finally {
      this.sending = false;
    }
  }

  /** The news as payloads that each fit in one NOTIFY. */
  private payloads(news: PeerNews): string[] {
    const payloads: string[] = [];
    let message: Message = { n: this.node };
    let size = 20;
    const flush = () => {
      if (message.e || message.d) payloads.push(JSON.stringify(message));
      message = { n: this.node };
      size = 20;
    };
    for (const seq of new Set(news.executions)) {
      if (size + 20 > MAX_PAYLOAD) flush();
      (message.e ??= []).push(seq);
      size += 20;
    }
    for (const [task, at] of news.due) {
      const cost = JSON.stringify(task).length + 20;
      if (size + cost > MAX_PAYLOAD) flush();
      (message.d ??= {})[task] = at;
      size += cost;
    }
    flush();
    return payloads;
  }

  private received(payload: string): void {
    let message: Message;
    try {
      message = JSON.parse(payload) as Message;
    } catch {
      return;
    }
    if (message.n === this.node) return;
    const news: PeerNews = { executions: message.e ?? [], due: new Map(Object.entries(message.d ?? {})) };
    for (const listener of this.listeners) listener(news);
  }

  private lost(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = null;
    client.end().catch(() => undefined);
    if (this.closed) return;
    this.options.onConnected(false);
    this.options.onWarning("the LISTEN connection to PostgreSQL was lost; reconnecting");
    this.reconnectSoon();
  }

  /**
   * Opens the LISTEN connection afresh; start() closes the old one once the
   * new one listens. After an outage in which it saw no error, it may be dead
   * all the same. Whatever was told meanwhile is looked for again, as after
   * any reconnect.
   */
  reconnect(): void {
    if (this.client === null || this.closed) return;
    this.start().catch(() => undefined);
  }

  private reconnectSoon(): void {
    if (this.closed || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.start().catch(() => this.reconnectSoon());
    }, 500);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => undefined);
  }
}
