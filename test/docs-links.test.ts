// Every relative link and image in the repository's Markdown leads somewhere
// that exists in the repository: the file or folder is there, the link does
// not climb out of the checkout, and a #anchor names a heading of its target.
// Absolute http(s) links are allowed and never fetched: the check reads files
// only, so it is fast and needs no network.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { posix } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Folders that are build output, dependencies or tool state, never the repository's own text. */
const SKIPPED_FOLDERS = new Set([".git", "node_modules", "dist", ".venv", ".bin", ".tmp", "__pycache__", ".pytest_cache"]);

/** What the checker needs to know about a tree of files; paths are relative to its root, with "/". */
interface Tree {
  files: ReadonlySet<string>;
  folders: ReadonlySet<string>;
  read(path: string): string;
}

type Rule = "missing" | "outside" | "anchor" | "label";

interface Problem {
  rule: Rule;
  file: string;
  line: number;
  link: string;
  why: string;
}

/** GitHub's heading slug: lowercase, punctuation other than "-" and "_" dropped, each space a "-". */
function slug(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}_\- ]/gu, "")
    .replace(/ /g, "-");
}

/** A heading's text as it renders: code spans, links and images reduced to their text, tags dropped. */
function headingText(raw: string): string {
  return raw
    .replace(/!?\[((?:[^[\]]|\[[^[\]]*\])*)\]\([^)]*\)/g, "$1")
    .replace(/<[^>]+>/g, "")
    .replace(/(`+)([\s\S]*?)\1/g, "$2")
    .replace(/[*]/g, "")
    .trim();
}

interface ParsedMarkdown {
  /** The anchors a link may name: heading slugs (with -1, -2… for repeats) and explicit HTML ids. */
  anchors: Set<string>;
  links: { line: number; target: string }[];
  /** Reference definitions, by normalized label. */
  definitions: Map<string, string>;
  /** Full and collapsed reference links: [text][label] and [label][]. */
  references: { line: number; label: string }[];
  /** Code spans that hold nothing but a path climbing up, such as `../../x.md`: text that names a place as a link would. */
  upwardPaths: { line: number; path: string }[];
}

const normalizeLabel = (label: string) => label.trim().replace(/\s+/g, " ").toLowerCase();

const INLINE_LINK = /!?\[((?:[^[\]]|\[[^[\]]*\])*)\]\(\s*(<[^>\n]*>|(?:[^\s()]|\([^\s()]*\))*)(?:\s+(?:"[^"]*"|'[^']*'|\([^)]*\)))?\s*\)/g;
const REFERENCE_LINK = /\[((?:[^[\]]|\[[^[\]]*\])*)\]\[([^\]]*)\]/g;
const DEFINITION = /^ {0,3}\[([^\]]+)\]:\s*(<[^>]*>|\S+)/;
const HTML_LINK = /<(?:a|img)\b[^>]*?\s(?:href|src)\s*=\s*["']([^"']+)["']/gi;
const HTML_ID = /<[a-z][^>]*?\s(?:id|name)\s*=\s*["']([^"']+)["']/gi;
const ATX_HEADING = /^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const SETEXT_UNDERLINE = /^ {0,3}(?:=+|-+)[ \t]*$/;
const FENCE = /^\s*(`{3,}|~{3,})/;

function parseMarkdown(text: string): ParsedMarkdown {
  const parsed: ParsedMarkdown = { anchors: new Set(), links: [], definitions: new Map(), references: [], upwardPaths: [] };
  const seen = new Map<string, number>();
  const addHeading = (raw: string) => {
    const base = slug(headingText(raw));
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    parsed.anchors.add(count === 0 ? base : `${base}-${count}`);
  };
  let fence: string | null = null;
  let previous = "";
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = i + 1;
    const opened = FENCE.exec(raw);
    if (fence !== null) {
      if (opened && opened[1]![0] === fence[0] && opened[1]!.length >= fence.length && raw.trim() === opened[1]) fence = null;
      previous = "";
      return;
    }
    if (opened) {
      fence = opened[1]!;
      previous = "";
      return;
    }
    for (const match of raw.matchAll(/(`+)([\s\S]*?)\1/g)) {
      if (/^(?:\.\.\/)+\S*$/.test(match[2]!.trim())) parsed.upwardPaths.push({ line, path: match[2]!.trim() });
    }
    // Code spans are not links; comments are not shown.
    const prose = raw.replace(/(`+)[\s\S]*?\1/g, "").replace(/<!--.*?-->/g, "");
    const heading = ATX_HEADING.exec(raw);
    if (heading) addHeading(heading[1] ?? "");
    else if (SETEXT_UNDERLINE.test(raw) && previous.trim() !== "" && !/^\s*([-*+]\s|\d+[.)]\s|\||>)/.test(previous)) addHeading(previous.trim());
    for (const match of prose.matchAll(HTML_ID)) parsed.anchors.add(match[1]!);
    const definition = DEFINITION.exec(prose);
    if (definition) {
      parsed.definitions.set(normalizeLabel(definition[1]!), definition[2]!.replace(/^<|>$/g, ""));
      parsed.links.push({ line, target: definition[2]!.replace(/^<|>$/g, "") });
    }
    for (const match of prose.matchAll(INLINE_LINK)) parsed.links.push({ line, target: match[2]!.replace(/^<|>$/g, "") });
    for (const match of prose.matchAll(HTML_LINK)) parsed.links.push({ line, target: match[1]! });
    for (const match of prose.replace(INLINE_LINK, "").matchAll(REFERENCE_LINK)) {
      parsed.references.push({ line, label: match[2] === "" ? match[1]! : match[2]! });
    }
    previous = heading ? "" : raw;
  });
  return parsed;
}

/** Schemes a link may use to point outside the repository; they are listed, never fetched. */
const ABSOLUTE = /^(?:https?:|mailto:)/i;
const ANY_SCHEME = /^[a-z][a-z0-9+.-]*:/i;
/** GitHub's line anchors on a code file: #L10, #L10-L20. */
const LINE_ANCHOR = /^L\d+(?:C\d+)?(?:-L\d+(?:C\d+)?)?$/;

/** A link's percent-encoded part, decoded; left as written when it is not valid percent-encoding. */
function decoded(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** Every broken relative link and image in the Markdown files of `tree`. */
function checkLinks(tree: Tree): Problem[] {
  const markdown = [...tree.files].filter((file) => /\.md$/i.test(file)).sort();
  const parsedCache = new Map<string, ParsedMarkdown>();
  const parse = (file: string) => {
    let parsed = parsedCache.get(file);
    if (!parsed) parsedCache.set(file, (parsed = parseMarkdown(tree.read(file))));
    return parsed;
  };
  const problems: Problem[] = [];
  for (const file of markdown) {
    const { links, definitions, references, upwardPaths } = parse(file);
    const report = (rule: Rule, line: number, link: string, why: string) => problems.push({ rule, file, line, link, why });
    for (const { line, label } of references) {
      if (!definitions.has(normalizeLabel(label))) report("label", line, `[${label}]`, "no reference definition has this label");
    }
    for (const { line, path } of upwardPaths) {
      const resolved = posix.normalize(posix.join(posix.dirname(file), path)).replace(/\/+$/, "");
      if (resolved === ".." || resolved.startsWith("../")) report("outside", line, `\`${path}\``, "names a path outside the repository");
      else if (!tree.files.has(resolved) && !tree.folders.has(resolved)) report("missing", line, `\`${path}\``, `${resolved} does not exist in the repository`);
    }
    for (const { line, target } of links) {
      if (ABSOLUTE.test(target) || target.startsWith("//")) continue;
      if (ANY_SCHEME.test(target)) {
        report("outside", line, target, "points outside the repository");
        continue;
      }
      const hash = target.indexOf("#");
      const pathPart = (hash === -1 ? target : target.slice(0, hash)).replace(/\?.*$/, "");
      const anchor = hash === -1 ? null : decoded(target.slice(hash + 1));
      let resolved: string;
      if (pathPart === "") {
        resolved = file;
      } else {
        const path = decoded(pathPart);
        const joined = path.startsWith("/") ? path.slice(1) : posix.join(posix.dirname(file), path);
        resolved = posix.normalize(joined === "" ? "." : joined).replace(/\/+$/, "");
        if (resolved === ".." || resolved.startsWith("../")) {
          report("outside", line, target, "leaves the repository");
          continue;
        }
      }
      const isFolder = resolved === "." || tree.folders.has(resolved);
      if (!isFolder && !tree.files.has(resolved)) {
        report("missing", line, target, `${resolved} does not exist in the repository`);
        continue;
      }
      if (anchor === null || anchor === "") continue;
      const headed = isFolder ? [posix.join(resolved, "README.md")].find((readme) => tree.files.has(readme)) : resolved;
      if (headed !== undefined && /\.md$/i.test(headed)) {
        if (!parse(headed).anchors.has(anchor)) report("anchor", line, target, `${headed} has no heading with the anchor #${anchor}`);
      } else if (!(headed !== undefined && LINE_ANCHOR.test(anchor))) {
        report("anchor", line, target, `#${anchor} names no heading: ${resolved} is not a Markdown file`);
      }
    }
  }
  return problems;
}

/** The repository's files: tracked ones and new ones git does not ignore, that exist on disk. */
function repositoryFiles(root: string): string[] {
  try {
    const listed = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: root, encoding: "utf8" });
    return [...new Set(listed.split("\0").filter((path) => path !== ""))].filter((path) => existsSync(posix.join(root, path)));
  } catch {
    // Not a git checkout: walk the tree, skipping build output and dependencies.
    const files: string[] = [];
    const walk = (folder: string) => {
      for (const entry of readdirSync(posix.join(root, folder), { withFileTypes: true })) {
        const path = folder === "" ? entry.name : `${folder}/${entry.name}`;
        if (entry.isDirectory()) {
          if (!SKIPPED_FOLDERS.has(entry.name)) walk(path);
        } else if (entry.isFile() || (entry.isSymbolicLink() && existsSync(posix.join(root, path)) && statSync(posix.join(root, path)).isFile())) {
          files.push(path);
        }
      }
    };
    walk("");
    return files;
  }
}

function repositoryTree(root: string): Tree {
  const files = new Set(repositoryFiles(root));
  const folders = new Set<string>();
  for (const file of files) {
    for (let folder = posix.dirname(file); folder !== "."; folder = posix.dirname(folder)) folders.add(folder);
  }
  return { files, folders, read: (path) => readFileSync(posix.join(root, path), "utf8") };
}

/** A tree held in memory, for checking the checker. */
function memoryTree(contents: Record<string, string>): Tree {
  const files = new Set(Object.keys(contents));
  const folders = new Set<string>();
  for (const file of files) {
    for (let folder = posix.dirname(file); folder !== "."; folder = posix.dirname(folder)) folders.add(folder);
  }
  return { files, folders, read: (path) => contents[path]! };
}

const shown = (problems: Problem[]) => problems.map((p) => `${p.file}:${p.line}: ${p.link}: ${p.why}`);

describe("links in the documentation", () => {
  const tree = repositoryTree(ROOT);
  const problems = checkLinks(tree);
  const broken = (rule: Rule) => shown(problems.filter((p) => p.rule === rule));

  test("the check reads every Markdown file of the repository, and none under node_modules or dist", () => {
    const markdown = [...tree.files].filter((file) => /\.md$/i.test(file));
    for (const file of ["README.md", "docs/state-machine.md", "docs/limits.md", "docs/guarantees.md", "clients/ts/README.md"]) {
      expect(markdown).toContain(file);
    }
    expect(markdown.filter((file) => /(^|\/)(node_modules|dist)\//.test(file))).toEqual([]);
  });

  test("every relative link and image, and every `../` path in a code span, points at a file or folder that exists in the repository", () => {
    expect(broken("missing")).toEqual([]);
  });

  test("no link leaves the repository: relative links and `../` paths stay inside it, and absolute ones are http(s) or mailto", () => {
    expect(broken("outside")).toEqual([]);
  });

  test("every #anchor matches a heading of its target file, slugged as GitHub does", () => {
    expect(broken("anchor")).toEqual([]);
  });

  test("every reference-style link uses a label that is defined in its file", () => {
    expect(broken("label")).toEqual([]);
  });
});

describe("the link checker", () => {
  test("heading slugs follow GitHub's rules: lowercase, spaces to -, punctuation other than - and _ dropped", () => {
    expect(slug("Quickstart: a worker and a caller")).toBe("quickstart-a-worker-and-a-caller");
    expect(slug(headingText("The protocol by hand, with `buf curl`"))).toBe("the-protocol-by-hand-with-buf-curl");
    expect(slug(headingText("### `Worker(address=\"127.0.0.1:50051\", concurrency=16)`".replace(/^#+ /, "")))).toBe("workeraddress12700150051-concurrency16");
    expect(slug("snake_case and kebab-case")).toBe("snake_case-and-kebab-case");
    expect(slug("1. Declare the tasks")).toBe("1-declare-the-tasks");
    expect(slug("Tokens, ids and keys")).toBe("tokens-ids-and-keys");
    expect(slug("Ça marche")).toBe("ça-marche");
  });

  test("a repeated heading gets -1, -2 … and explicit HTML ids are anchors too", () => {
    const { anchors } = parseMarkdown("# Notes\n\n## Notes\n\n### Notes\n\n<a id=\"here\"></a>\n\nSetext\n------\n");
    expect([...anchors].sort()).toEqual(["here", "notes", "notes-1", "notes-2", "setext"]);
  });

  test("links inside fenced code blocks and code spans are not links", () => {
    const { links } = parseMarkdown("```md\n[a](missing.md)\n```\n\n`[b](missing.md)` and [c](present.md)\n\n~~~\n# not a heading\n~~~\n");
    expect(links.map((l) => l.target)).toEqual(["present.md"]);
  });

  test("it reads inline links, images, reference definitions and HTML links, with titles and angle brackets", () => {
    const { links } = parseMarkdown(
      '[a](a.md) ![b](img/b.png "B") [c](<c d.md>) [e][ref] <a href="f.md">f</a> <img src="g.png">\n\n[ref]: e.md "E"\n',
    );
    expect(links.map((l) => l.target).sort()).toEqual(["a.md", "c d.md", "e.md", "f.md", "g.png", "img/b.png"]);
  });

  test("the checks catch a missing file, a link or `../` path out of the repository, an anchor that names no heading, and an undefined label", () => {
    const tree = memoryTree({
      "README.md": [
        "# Title",
        "[fine](docs/a.md) [fine folder](docs) [fine anchor](docs/a.md#a-heading) [own](#title) [web](https://example.com/x)",
        "[gone](docs/missing.md)",
        "[up](../../elsewhere/CONTRACT.md) [file](file:///etc/passwd) `../../elsewhere/NOTES.md`",
        "[bad anchor](docs/a.md#no-such-heading) [bad own](#nothing)",
        "[ref link][nowhere]",
        "[line](src/code.ts#L10) [not a line](src/code.ts#main)",
      ].join("\n"),
      "docs/a.md": "# A heading\n\n[back](../README.md#title) [root](/README.md) `../README.md` `../elsewhere/CONTRACT.md`\n",
      "src/code.ts": "export {};\n",
    });
    const found = checkLinks(tree).map((p) => `${p.rule} ${p.file}:${p.line} ${p.link}`);
    expect(found.sort()).toEqual([
      "anchor README.md:5 #nothing",
      "anchor README.md:5 docs/a.md#no-such-heading",
      "anchor README.md:7 src/code.ts#main",
      "label README.md:6 [nowhere]",
      "missing README.md:3 docs/missing.md",
      "missing docs/a.md:3 `../elsewhere/CONTRACT.md`",
      "outside README.md:4 ../../elsewhere/CONTRACT.md",
      "outside README.md:4 `../../elsewhere/NOTES.md`",
      "outside README.md:4 file:///etc/passwd",
    ]);
  });

  test("absolute http(s) links are listed as allowed and never fetched", () => {
    const original = globalThis.fetch;
    globalThis.fetch = () => {
      throw new Error("the link check must not fetch");
    };
    try {
      const tree = memoryTree({ "README.md": "[a](https://example.com/missing) [b](http://127.0.0.1:9/x) [c](mailto:ops@example.com)\n" });
      expect(checkLinks(tree)).toEqual([]);
    } finally {
      globalThis.fetch = original;
    }
  });
});
