import { describe, expect, test } from "vitest";
import { newExecutionId } from "../server/coordinator/ids.js";

describe("execution ids", () => {
  test("execution ids are UUIDv7: unique, and ordered by the moment they were made", () => {
    const ids = Array.from({ length: 1000 }, (_, i) => newExecutionId(1_700_000_000_000 + i));
    expect(new Set(ids).size).toBe(1000);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect([...ids].sort()).toEqual(ids);
  });
});
