// The scheduler's one timer, on the real clock and on a fake one.
import { describe, expect, test } from "vitest";
import { systemClock } from "../server/coordinator/clock.js";
import { Scheduler } from "../server/coordinator/scheduler.js";
import { FakeClock, millis, startTestCoordinator, toMs } from "./helpers.js";
import { fail, leaseNow, submit } from "./wire-helpers.js";

describe("scheduler timer", () => {
  test("the real timer wakes a long-polling worker close to the moment a retry is due", async () => {
    const c = await startTestCoordinator();
    try {
      await submit(c, "t", { retryPolicy: { limit: 1, backoffMin: millis(300) } });
      const [first] = await leaseNow(c, ["t"]);
      const receipt = await fail(c, first!);
      const dueAt = toMs(receipt.nextAttemptAt);
      const { attempts } = await c.workers.leaseAttempts({ workerId: "w", tasks: ["t"], wait: millis(5000) });
      const lateness = Date.now() - dueAt;
      expect(attempts).toHaveLength(1);
      expect(lateness).toBeGreaterThanOrEqual(0);
      expect(lateness).toBeLessThan(250);
    } finally {
      await c.close();
    }
  });

  test("a wait longer than setTimeout supports (about 24.8 days) is re-armed instead of firing early", async () => {
    const clock = new FakeClock();
    const fired: number[] = [];
    const scheduler = new Scheduler(clock, () => fired.push(clock.now()));
    const start = clock.now();
    const target = start + 30 * 86_400_000;
    scheduler.armAt(target);
    expect(clock.nextTimerAt! - start).toBe(2 ** 31 - 1);
    await clock.advanceTo(start + 2 ** 31 - 1);
    expect(fired).toEqual([]);
    expect(clock.nextTimerAt).toBe(target);
    await clock.advanceTo(target);
    expect(fired).toEqual([target]);
  });

  test("consider() only ever moves the timer earlier", () => {
    const clock = new FakeClock();
    const scheduler = new Scheduler(clock, () => {});
    scheduler.consider(clock.now() + 5000);
    scheduler.consider(clock.now() + 9000);
    expect(scheduler.nextWakeAt).toBe(clock.now() + 5000);
    scheduler.consider(clock.now() + 1000);
    expect(scheduler.nextWakeAt).toBe(clock.now() + 1000);
    scheduler.stop();
    expect(clock.nextTimerAt).toBeNull();
  });

  test("the system clock's timers fire", async () => {
    const fired = await new Promise<boolean>((resolve) => systemClock.setTimeout(() => resolve(true), 1));
    expect(fired).toBe(true);
  });
});
