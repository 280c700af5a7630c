// An execution's attempts on one time axis, drawn as SVG: for each attempt its
// wait (scheduled to started), its run (started to finished, or to now while
// it runs) coloured by its state, and between attempts the wait that followed,
// labelled with the rule that set it.
import type { Execution } from "./api.js";
import { clockTime, duration, ms, ruleName, shortState } from "./format.js";

const ROW = 40;
const LEFT = 92;
const RIGHT = 16;
const TOP = 28;

export function Timeline({ execution, now, width }: { execution: Execution; now: number; width: number }) {
  const attempts = execution.attempts ?? [];
  const start = ms(execution.createdAt)!;
  const pendingAt = ms(execution.nextAttemptAt);
  const ends = attempts.flatMap((a) => [ms(a.finishedAt) ?? now, ms(a.retryAt) ?? 0]);
  const end = Math.max(start + 1000, ms(execution.finishedAt) ?? now, pendingAt ?? 0, ...ends);
  const plot = Math.max(120, width - LEFT - RIGHT);
  const x = (t: number) => LEFT + ((t - start) / (end - start)) * plot;
  const rows = attempts.length + (pendingAt !== null ? 1 : 0);
  const height = TOP + Math.max(1, rows) * ROW + 8;
  const ticks = Array.from({ length: 5 }, (_, i) => start + ((end - start) * i) / 4);
  return (
    <svg class="timeline" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img" aria-label={`Timeline of ${attempts.length} attempts`}>
      {ticks.map((t, i) => (
        <g key={`tick${i}`}>
          <line x1={x(t)} x2={x(t)} y1={TOP - 6} y2={height - 4} class="tick" />
          <text x={x(t)} y={TOP - 12} class="tick-label" text-anchor={i === 0 ? "start" : i === 4 ? "end" : "middle"}>
            {i === 0 ? clockTime(t).slice(11) : `+${duration(t - start)}`}
          </text>
        </g>
      ))}
      {attempts.map((attempt, i) => {
        const y = TOP + i * ROW;
        const scheduled = ms(attempt.scheduledAt)!;
        const started = ms(attempt.startedAt)!;
        const finished = ms(attempt.finishedAt) ?? now;
        const state = shortState(attempt.state).toLowerCase();
        const next = attempts[i + 1];
        const waitEnd = next ? ms(next.scheduledAt) : i === attempts.length - 1 ? pendingAt : null;
        const rule = ruleName(attempt);
        return (
          <g key={attempt.number} class="attempt-row" data-attempt={attempt.number}>
            <text x={8} y={y + 19} class="row-label">
              attempt {attempt.number}
            </text>
            {started > scheduled && <rect x={x(scheduled)} y={y + 12} width={Math.max(1, x(started) - x(scheduled))} height={4} class="queued" />}
            <rect x={x(started)} y={y + 6} width={Math.max(3, x(finished) - x(started))} height={16} rx={3} class={`bar state-${state}`}>
              <title>{`attempt ${attempt.number}: ${shortState(attempt.state)} after ${duration(finished - started)}${attempt.failure ? ` — ${attempt.failure.type}` : ""}`}</title>
            </rect>
            {waitEnd !== null && waitEnd !== undefined && waitEnd > finished && (
              <g class="wait">
                <line x1={x(finished) + 3} x2={x(waitEnd)} y1={y + 14} y2={y + 14} class="wait-line" />
                <line x1={x(waitEnd)} x2={x(waitEnd)} y1={y + 14} y2={y + ROW + 6} class="wait-line" />
                <text x={(x(finished) + x(waitEnd)) / 2} y={y + 9} class="wait-label" text-anchor="middle">
                  {`${duration(waitEnd - finished)}${rule && rule !== "no retries left" && rule !== "non-retryable" && rule !== "max_elapsed" ? ` · ${rule}` : ""}`}
                </text>
              </g>
            )}
          </g>
        );
      })}
      {pendingAt !== null && (
        <g class="attempt-row next">
          <text x={8} y={TOP + attempts.length * ROW + 19} class="row-label">
            attempt {attempts.length + 1}
          </text>
          <rect x={x(pendingAt) - 1.5} y={TOP + attempts.length * ROW + 6} width={3} height={16} class="bar state-pending" />
          <text x={Math.min(x(pendingAt) + 8, width - RIGHT)} y={TOP + attempts.length * ROW + 19} class="tick-label" text-anchor={x(pendingAt) + 8 > width - 120 ? "end" : "start"}>
            {pendingAt > now ? `due ${duration(pendingAt - now)} from now` : "due now"}
          </text>
        </g>
      )}
      {execution.finishedAt === undefined && <line x1={x(now)} x2={x(now)} y1={TOP - 6} y2={height - 4} class="now" />}
    </svg>
  );
}
