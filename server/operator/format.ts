// Human output for the `reprise` operator commands: aligned tables, relative
// times, durations, and colour only on a terminal (and never with NO_COLOR set
// to anything but the empty string, as the NO_COLOR convention has it).

export interface Style {
  color: boolean;
}

export function terminalStyle(stream: NodeJS.WriteStream): Style {
  return { color: Boolean(stream.isTTY) && !process.env.NO_COLOR && process.env.TERM !== "dumb" };
}

const CODES = { red: 31, green: 32, yellow: 33, blue: 34, magenta: 35, cyan: 36, dim: 2, bold: 1 } as const;
export type Color = keyof typeof CODES;

export function paint(style: Style, color: Color, text: string): string {
  return style.color ? `\u001b[${CODES[color]}m${text}\u001b[0m` : text;
}

const STATE_COLOR: Record<string, Color> = {
  PENDING: "yellow",
  RUNNING: "cyan",
  SUCCEEDED: "green",
  FAILED: "red",
  ABANDONED: "magenta",
  TIMED_OUT: "magenta",
  CANCELLED: "dim",
};

export function stateText(style: Style, state: string): string {
  return paint(style, STATE_COLOR[state] ?? "bold", state);
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g;
const visibleLength = (text: string) => text.replace(ANSI, "").length;

/** Left-aligned columns separated by two spaces; the header is dimmed. */
export function table(style: Style, header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => visibleLength(r[i] ?? ""))));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell + " ".repeat(widths[i]! - visibleLength(cell))))
      .join("  ")
      .trimEnd();
  return [paint(style, "dim", line(header)), ...rows.map(line)].join("\n") + "\n";
}

/** 850 ms, 12.3 s, 4m 05s, 2h 10m, 3d 4h. */
export function duration(ms: number): string {
  const abs = Math.abs(ms);
  if (abs < 1000) return `${Math.round(abs)} ms`;
  if (abs < 60_000) return `${(abs / 1000).toFixed(abs < 10_000 ? 2 : 1)} s`;
  const s = Math.floor(abs / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

/** "in 4m 05s" or "12.3 s ago", relative to `now`. */
export function relative(at: number, now: number): string {
  if (Math.abs(at - now) < 500) return "now";
  return at > now ? `in ${duration(at - now)}` : `${duration(now - at)} ago`;
}

export function clockTime(ms: number): string {
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}
