// News between coordinator nodes: a NOTIFY takes a lock that serializes commits
// across the database, so a node never sends one per change.
import { describe, expect, test } from "vitest";
import { PostgresPeers } from "../server/store/postgres/peers.js";

function peersRecording() {
  const sent: string[] = [];
  let release: () => void = () => {};
  const peers = new PostgresPeers({
    connect: () => {
      throw new Error("not connected in this test");
    },
    // Each NOTIFY stays in flight until the test lets it finish.
    notify: (payload) => {
      sent.push(payload);
      return new Promise<void>((resolve) => (release = resolve));
    },
    onWarning: () => {},
    onConnected: () => {},
  });
  return { peers, sent, finishNotify: () => release() };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe("news between nodes", () => {
  test("a burst of news is coalesced: one NOTIFY in flight, then one carrying everything told meanwhile", async () => {
    const { peers, sent, finishNotify } = peersRecording();
    peers.tell({ executions: [1], due: new Map([["t", 100]]) });
    for (let i = 2; i <= 200; i++) peers.tell({ executions: [i], due: new Map([["t", 100 + i], ["u", 50 + i]]) });
    await turn();
    expect(sent).toHaveLength(1);
    finishNotify();
    await turn();
    expect(sent).toHaveLength(2);
    const second = JSON.parse(sent[1]!) as { e: number[]; d: Record<string, number> };
    expect(second.e).toEqual(Array.from({ length: 199 }, (_, i) => i + 2));
    // Per task, the earliest moment work comes due.
    expect(second.d).toEqual({ t: 102, u: 52 });
    finishNotify();
    await turn();
    expect(sent).toHaveLength(2);
    await peers.close();
  });

  test("news too large for one NOTIFY is split into payloads that each fit, losing nothing", async () => {
    const { peers, sent, finishNotify } = peersRecording();
    const executions = Array.from({ length: 5000 }, (_, i) => 1_000_000_000 + i);
    peers.tell({ executions, due: new Map(Array.from({ length: 300 }, (_, i) => [`task_${"x".repeat(40)}_${i}`, i])) });
    // Let every payload go out, one in flight at a time.
    for (let i = 0; i < 40; i++) {
      finishNotify();
      await turn();
    }
    expect(sent.length).toBeGreaterThan(1);
    for (const payload of sent) expect(Buffer.byteLength(payload)).toBeLessThan(8000);
    const messages = sent.map((payload) => JSON.parse(payload) as { e?: number[]; d?: Record<string, number> });
    expect(messages.flatMap((m) => m.e ?? [])).toEqual(executions);
    expect(messages.reduce((n, m) => n + Object.keys(m.d ?? {}).length, 0)).toBe(300);
    await peers.close();
  });
});
