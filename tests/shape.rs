//! The crate's shape holds (STYLE.md "The compiler (or a test) holds the graph", "One-way
//! rooms"): the files of one folder import each other one way only, and the arrows between the
//! rooms that the layout forbids (DESIGN.md §7 "Layout": routing is pure, no IO; STYLE.md "Split
//! by effect") do not appear.
//!
//! The test reads `src/**/*.rs`, takes every intra-crate import of each file (`use` trees, and
//! `crate::`/`super::`/`self::`/bound-name paths in code), resolves each through the modules'
//! re-exports to the file that defines the item, and checks the resulting file graph. `mod`
//! declarations are not imports. Test-only code (`#[cfg(test)]` items and `tests.rs` files) is
//! exempt.
//!
//! Arrows that other work in flight removes are listed in [`PENDING`]; the list can only shrink
//! (a test fails when an entry no longer occurs).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Imports allowed for now, as exact `(file, import)` pairs: the file (relative to `src/`) and
/// the import as the test prints it (the absolute path, `crate::...`). Each entry is removed by
/// work in flight; `pending_entries_still_occur` fails as soon as one no longer occurs, so the
/// list only shrinks. The lead empties it when that work merges.
const PENDING: &[(&str, &str)] = &[];

// ------------------------------------------------------------------------------------------------
// The rules.

#[test]
fn no_circle_among_the_files_of_a_folder() {
    let g = Graph::of_crate();
    let mut report = String::new();
    for folder in g.folders() {
        for (members, edges) in g.cycles_in(&folder) {
            let _ = writeln!(report, "circle in src/{folder}/: {}", members.join(" <-> "));
            for e in edges {
                let _ = writeln!(report, "    {e}");
            }
        }
    }
    assert!(
        report.is_empty(),
        "files of one folder import each other in a circle; move the shared type to the file \
         (or a small new file) it belongs in:\n{report}"
    );
}

#[test]
fn proxy_does_not_import_control() {
    forbid(
        "proxy",
        &["control"],
        "workers reach control only through the ports it publishes",
    );
}

#[test]
fn routing_imports_no_wire_format_or_io_room() {
    forbid(
        "routing",
        &["http", "proxy", "control", "mock"],
        "routing is pure decision (DESIGN.md §7): it knows no wire format, no IO and no control",
    );
}

#[test]
fn mock_does_not_import_proxy() {
    forbid(
        "mock",
        &["proxy"],
        "the mock backend stands alone: no code path shared with the proxy",
    );
}

#[test]
fn control_does_not_import_proxy() {
    forbid(
        "control",
        &["proxy"],
        "control publishes; it never reaches into the workers",
    );
}

#[test]
fn http_imports_no_upper_room() {
    forbid(
        "http",
        &["routing", "proxy", "control"],
        "http parses and frames; it knows nothing of decisions, forwarding or control",
    );
}

#[test]
fn admission_and_the_worker_port_are_leaves() {
    let g = Graph::of_crate();
    let mut report = String::new();
    for e in &g.edges {
        let (from, to) = (room(&e.from), room(&e.to));
        if ["admission", "port"].contains(&from) && to != from {
            let _ = writeln!(report, "    {e}");
        }
    }
    assert!(
        report.is_empty(),
        "admission and port import nothing else from the crate (the snapshot carries the \
         counters and the workers hold the port, so neither may pull a room in behind them):\n\
         {report}"
    );
}

/// Fails listing every import from room `from` into one of `to` (a room is the first component
/// under `src/`), [`PENDING`] entries aside.
fn forbid(from: &str, to: &[&str], why: &str) {
    let g = Graph::of_crate();
    let mut report = String::new();
    for e in g.edges.iter().filter(|e| !is_pending(e)) {
        if room(&e.from) == from && to.contains(&room(&e.to)) {
            let _ = writeln!(report, "    {e}");
        }
    }
    assert!(
        report.is_empty(),
        "{from} -> {}: forbidden ({why}):\n{report}",
        to.join("/")
    );
}

#[test]
fn routing_does_no_io() {
    let g = Graph::of_crate();
    let mut report = String::new();
    for f in g.files.iter().filter(|f| room(&f.rel) == "routing") {
        for (path, line) in &f.external {
            if let Some(what) = io_use(path) {
                let _ = writeln!(
                    report,
                    "    src/{}:{line}: {} ({what})",
                    f.rel,
                    path.join("::")
                );
            }
        }
    }
    assert!(
        report.is_empty(),
        "routing is pure (no sockets, no clocks, no threads; STYLE.md \"Split by effect\"):\n{report}"
    );
}

/// Not a rule: prints which file imports which inside each folder (or only `SHAPE_FOLDER`), of
/// this crate or of the `src/` at `SHAPE_SRC`. `cargo test --test shape -- --ignored --nocapture`.
#[test]
#[ignore]
fn print_folder_graphs() {
    let g = match std::env::var_os("SHAPE_SRC") {
        Some(src) => Graph::of_dir(Path::new(&src)),
        None => Graph::of_crate(),
    };
    let only = std::env::var("SHAPE_FOLDER").ok();
    for folder in g
        .folders()
        .into_iter()
        .filter(|f| only.as_ref().is_none_or(|o| o == f))
    {
        let prefix = format!("{folder}/");
        let short = |rel: &str| rel.strip_prefix(&prefix).unwrap_or(rel).to_string();
        let mut arrows: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in g
            .files
            .iter()
            .filter(|f| f.rel.rsplit_once('/').is_some_and(|(d, _)| d == folder))
        {
            arrows.entry(short(&f.rel)).or_default();
        }
        for e in g.edges.iter().filter(|e| e.to.starts_with(&prefix)) {
            if let Some(set) = arrows.get_mut(&short(&e.from)) {
                set.insert(short(&e.to));
            }
        }
        println!("{prefix}");
        for (from, to) in arrows {
            println!(
                "    {from} -> {}",
                to.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
    }
}

#[test]
fn pending_entries_still_occur() {
    let g = Graph::of_crate();
    let gone: Vec<String> = PENDING
        .iter()
        .filter(|(file, import)| {
            !g.edges
                .iter()
                .any(|e| e.from == *file && e.import == *import)
        })
        .map(|(file, import)| format!("    (\"{file}\", \"{import}\")"))
        .collect();
    assert!(
        gone.is_empty(),
        "these PENDING entries no longer occur; delete them from tests/shape.rs so the list \
         only shrinks:\n{}",
        gone.join("\n")
    );
}

fn is_pending(e: &Edge) -> bool {
    PENDING.iter().any(|(f, i)| e.from == *f && e.import == *i)
}

/// The room of a file: its first component under `src/` (`proxy/conn.rs` -> `proxy`,
/// `server.rs` -> `server`).
fn room(rel: &str) -> &str {
    let first = rel.split('/').next().unwrap_or(rel);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// Why `path` (an external path as written) is IO, if it is.
fn io_use(path: &[String]) -> Option<&'static str> {
    let s: Vec<&str> = path.iter().map(String::as_str).collect();
    // Address types are data; sockets and name lookups are IO.
    const ADDRESS_TYPES: &[&str] = &[
        "SocketAddr",
        "SocketAddrV4",
        "SocketAddrV6",
        "IpAddr",
        "Ipv4Addr",
        "Ipv6Addr",
    ];
    match s.as_slice() {
        ["monoio", ..] | ["io_uring", ..] | ["socket2", ..] | ["libc", ..] => Some("an IO crate"),
        ["std", "thread", ..] => Some("threads"),
        ["std", "fs", ..] => Some("the file system"),
        ["std", "net", t, ..] if ADDRESS_TYPES.contains(t) => None,
        ["std", "net", ..] => Some("sockets"),
        _ if s
            .windows(2)
            .any(|w| matches!(w, ["Instant" | "SystemTime", "now"])) =>
        {
            Some("reads the clock")
        }
        _ => None,
    }
}

// ------------------------------------------------------------------------------------------------
// The graph.

/// One intra-crate import: `from` (a file under `src/`) uses `import`, defined in `to`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    from: String,
    to: String,
    line: usize,
    /// The absolute path imported, `crate::...`.
    import: String,
}

impl std::fmt::Display for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Edge {
            from,
            to,
            line,
            import,
        } = self;
        write!(f, "src/{from}:{line}: {import} (in src/{to})")
    }
}

/// What one file says, before resolution.
#[derive(Debug, Default)]
struct FileFacts {
    /// Path relative to `src/`, with `/`.
    rel: String,
    /// The module path of the file (`routing/dispatch.rs` -> `["routing", "dispatch"]`).
    module: Vec<String>,
    /// Inline (non-test) modules declared in the file, as full module paths.
    inline_modules: Vec<Vec<String>>,
    /// Item names defined per module path (the file's own module and its inline ones).
    defs: Vec<(Vec<String>, String)>,
    /// `use` leaves: the module they sit in, the path as written, glob, bound name, line.
    uses: Vec<UseLeaf>,
    /// Paths in code with at least two segments: the module they sit in, the path, line.
    code_paths: Vec<(Vec<String>, Vec<String>, usize)>,
    /// Every path (use leaf or code) not anchored at `crate`/`self`/`super`, as written, with its
    /// line.
    external: Vec<(Vec<String>, usize)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct UseLeaf {
    module: Vec<String>,
    path: Vec<String>,
    glob: bool,
    /// The name the leaf binds (`None` for globs and `as _`).
    name: Option<String>,
    line: usize,
}

struct Graph {
    files: Vec<FileFacts>,
    edges: Vec<Edge>,
}

/// The crate's modules and names, for resolution.
#[derive(Default)]
struct Modules {
    /// Module path -> file (relative to `src/`).
    file_of: HashMap<Vec<String>, String>,
    defs: HashMap<Vec<String>, BTreeSet<String>>,
    /// Module -> bound name -> absolute path.
    bindings: HashMap<Vec<String>, HashMap<String, Vec<String>>>,
    /// Module -> absolute paths of glob imports.
    globs: HashMap<Vec<String>, Vec<Vec<String>>>,
}

impl Graph {
    /// The graph of this crate's `src/` (without `main.rs`, the binary's own crate).
    fn of_crate() -> Graph {
        Graph::of_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
    }

    /// The graph of the crate whose `src/` is `src`.
    fn of_dir(src: &Path) -> Graph {
        let mut paths = Vec::new();
        walk(src, &mut paths);
        let sources: Vec<(String, String)> = paths
            .into_iter()
            .filter_map(|p| {
                let rel = p
                    .strip_prefix(src)
                    .ok()?
                    .to_string_lossy()
                    .replace('\\', "/");
                let text =
                    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                Some((rel, text))
            })
            .filter(|(rel, _)| rel != "main.rs" && !is_test_file(rel))
            .collect();
        Graph::build(&sources)
    }

    /// The graph of `(path under src/, text)` files.
    fn build(sources: &[(String, String)]) -> Graph {
        let files: Vec<FileFacts> = sources
            .iter()
            .map(|(rel, text)| parse_file(rel, text))
            .collect();
        let mut m = Modules::default();
        for f in &files {
            m.file_of.insert(f.module.clone(), f.rel.clone());
            for im in &f.inline_modules {
                m.file_of.insert(im.clone(), f.rel.clone());
            }
            for (module, name) in &f.defs {
                m.defs
                    .entry(module.clone())
                    .or_default()
                    .insert(name.clone());
            }
        }
        // Bindings need the module tree to tell a relative path from an external one.
        for f in &files {
            for u in &f.uses {
                let Some(abs) = m.absolute(&u.module, &u.path, true) else {
                    continue;
                };
                if u.glob {
                    m.globs.entry(u.module.clone()).or_default().push(abs);
                } else if let Some(name) = &u.name {
                    m.bindings
                        .entry(u.module.clone())
                        .or_default()
                        .insert(name.clone(), abs);
                }
            }
        }
        let mut edges = BTreeMap::new();
        for f in &files {
            let uses = f.uses.iter().map(|u| (&u.module, &u.path, u.line, true));
            let code = f
                .code_paths
                .iter()
                .map(|(module, p, line)| (module, p, *line, false));
            for (module, path, line, is_use) in uses.chain(code) {
                let Some(abs) = m.absolute(module, path, is_use) else {
                    continue;
                };
                let Some(to) = m.resolve(&abs, 0) else {
                    continue;
                };
                if to == f.rel {
                    continue;
                }
                let import = format!("crate::{}", m.item_path(&abs).join("::"));
                edges
                    .entry((f.rel.clone(), import.clone()))
                    .or_insert(Edge {
                        from: f.rel.clone(),
                        to,
                        line,
                        import,
                    });
            }
        }
        Graph {
            files,
            edges: edges.into_values().collect(),
        }
    }

    /// Every folder under `src/` that holds a file.
    fn folders(&self) -> BTreeSet<String> {
        self.files
            .iter()
            .filter_map(|f| f.rel.rsplit_once('/').map(|(d, _)| d.to_string()))
            .collect()
    }

    /// The circles among the entries of `folder` (its files, and each subfolder as one node):
    /// each strongly connected component of more than one entry, with its edges.
    fn cycles_in(&self, folder: &str) -> Vec<(Vec<String>, Vec<Edge>)> {
        let prefix = format!("{folder}/");
        // A folder's `mod.rs` is its front door (declarations, re-exports, the types its
        // files share), not one of its rooms: hyper's `proto/h1` is one-way among `conn`,
        // `decode`, `encode`, `dispatch` and `role` while its `mod.rs` re-exports them.
        let entry = |rel: &str| -> Option<String> {
            let rest = rel.strip_prefix(&prefix)?;
            let first = rest.split('/').next().unwrap_or(rest);
            (first != "mod.rs").then(|| first.to_string())
        };
        let mut adj: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut inner = Vec::new();
        for e in self.edges.iter().filter(|e| !is_pending(e)) {
            let (Some(a), Some(b)) = (entry(&e.from), entry(&e.to)) else {
                continue;
            };
            if a != b {
                adj.entry(a.clone()).or_default().insert(b.clone());
                adj.entry(b.clone()).or_default();
                inner.push((a, b, e.clone()));
            }
        }
        strongly_connected(&adj)
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|c| {
                let edges = inner
                    .iter()
                    .filter(|(a, b, _)| c.contains(a) && c.contains(b))
                    .map(|(_, _, e)| e.clone())
                    .collect();
                (
                    c.into_iter().map(|n| format!("{prefix}{n}")).collect(),
                    edges,
                )
            })
            .collect()
    }
}

impl Modules {
    fn is_module(&self, m: &[String]) -> bool {
        self.file_of.contains_key(m)
    }

    /// `path` written in module `at` as an absolute module path, or `None` when it is not
    /// intra-crate. In `use` paths a first segment naming a child module or an item of `at` is
    /// relative (2018 paths); in code, also a name `at` binds with `use`.
    fn absolute(&self, at: &[String], path: &[String], is_use: bool) -> Option<Vec<String>> {
        let first = path.first()?;
        let mut out: Vec<String>;
        let mut rest = &path[1..];
        match first.as_str() {
            "crate" => out = Vec::new(),
            "self" => out = at.to_vec(),
            "super" => {
                out = at.to_vec();
                out.pop()?;
                while rest.first().map(String::as_str) == Some("super") {
                    out.pop()?;
                    rest = &rest[1..];
                }
            }
            name => {
                let mut child = at.to_vec();
                child.push(name.to_string());
                if self.is_module(&child) || self.defs.get(at).is_some_and(|d| d.contains(name)) {
                    out = child;
                } else if let (false, Some(b)) =
                    (is_use, self.bindings.get(at).and_then(|b| b.get(name)))
                {
                    out = b.clone();
                } else {
                    return None;
                }
            }
        }
        out.extend(rest.iter().cloned());
        Some(out)
    }

    /// `abs` up to the item it names in its module (`a::b::Enum::Variant` -> `a::b::Enum`).
    fn item_path<'p>(&self, abs: &'p [String]) -> &'p [String] {
        let modules = (1..=abs.len())
            .take_while(|&n| self.is_module(&abs[..n]))
            .count();
        &abs[..(modules + 1).min(abs.len())]
    }

    /// The file that defines what absolute path `abs` names, following `use` re-exports.
    fn resolve(&self, abs: &[String], depth: usize) -> Option<String> {
        let mut m: Vec<String> = Vec::new();
        let mut i = 0;
        while let Some(seg) = abs.get(i) {
            m.push(seg.clone());
            if !self.is_module(&m) {
                m.pop();
                break;
            }
            i += 1;
        }
        let here = self.file_of.get(&m).cloned();
        let (Some(name), true) = (abs.get(i), depth < 16) else {
            return here;
        };
        if self.defs.get(&m).is_some_and(|d| d.contains(name)) {
            return here;
        }
        if let Some(target) = self.bindings.get(&m).and_then(|b| b.get(name)) {
            let mut next = target.clone();
            next.extend(abs[i + 1..].iter().cloned());
            return self.resolve(&next, depth + 1).or(here);
        }
        for g in self.globs.get(&m).into_iter().flatten() {
            let mut child = g.clone();
            child.push(name.clone());
            let binds = self.bindings.get(g).is_some_and(|b| b.contains_key(name));
            if self.is_module(&child) || binds || self.defs.get(g).is_some_and(|d| d.contains(name))
            {
                let mut next = g.clone();
                next.extend(abs[i..].iter().cloned());
                return self.resolve(&next, depth + 1).or(here);
            }
        }
        here
    }
}

/// Tarjan's strongly connected components.
fn strongly_connected(adj: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        adj: &'a BTreeMap<String, BTreeSet<String>>,
        index: HashMap<&'a str, usize>,
        low: HashMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.adj.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            comp.sort();
            s.out.push(comp);
        }
    }
    let mut s = State {
        adj,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in adj.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Test-only files: `tests.rs` and anything under a `tests/` folder.
fn is_test_file(rel: &str) -> bool {
    rel == "tests.rs"
        || rel.ends_with("/tests.rs")
        || rel.starts_with("tests/")
        || rel.contains("/tests/")
}

/// The module path of a file under `src/`: `lib.rs` is the root, `a/mod.rs` is `a`.
fn module_of(rel: &str) -> Vec<String> {
    let no_ext = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = no_ext.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts
}

// ------------------------------------------------------------------------------------------------
// The parser: a small Rust lexer, `#[cfg(test)]` item removal, `use` trees and code paths.

#[derive(Debug, Clone, PartialEq, Eq)]
struct Tok {
    /// An identifier (raw identifiers without `r#`), `::`, one punctuation character, or `""`
    /// for a literal.
    t: String,
    line: usize,
}

/// Tokens of `src`, comments dropped, literals reduced to `""`.
fn lex(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let lit = |line| Tok {
        t: String::new(),
        line,
    };
    while i < c.len() {
        let ch = c[i];
        let start_line = line;
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_at(&c, i) {
            // r"..", r#".."#, br"..": skip to the quote and the same number of hashes.
            i += hashes.0;
            loop {
                match c.get(i) {
                    None => break,
                    Some('"') if (1..=hashes.1).all(|k| at(i + k) == '#') => {
                        i += 1 + hashes.1;
                        break;
                    }
                    Some(x) => {
                        line += usize::from(*x == '\n');
                        i += 1;
                    }
                }
            }
            out.push(lit(start_line));
        } else if ch == '"' || ((ch == 'b' || ch == 'c') && at(i + 1) == '"') {
            i += if ch == '"' { 1 } else { 2 };
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                line += usize::from(at(i) == '\n');
                i += 1;
            }
            i += 1;
            out.push(lit(start_line));
        } else if ch == '\'' || (ch == 'b' && at(i + 1) == '\'') {
            // A char literal ('x', '\n', b'x') or a lifetime ('a).
            let q = if ch == 'b' { i + 1 } else { i };
            if at(q + 1) == '\\' {
                i = q + 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push(lit(start_line));
            } else if at(q + 2) == '\'' {
                i = q + 3;
                out.push(lit(start_line));
            } else {
                i = q + 1;
                while at(i).is_alphanumeric() || at(i) == '_' {
                    i += 1;
                }
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let mut s = i;
            if ch == 'r' && at(i + 1) == '#' && (at(i + 2).is_alphabetic() || at(i + 2) == '_') {
                s = i + 2;
            }
            i = s;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            out.push(Tok {
                t: c[s..i].iter().collect(),
                line,
            });
        } else if ch.is_ascii_digit() {
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            out.push(lit(line));
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Tok {
                t: "::".into(),
                line,
            });
            i += 2;
        } else {
            out.push(Tok {
                t: ch.to_string(),
                line,
            });
            i += 1;
        }
    }
    out
}

/// At a raw string start: `(characters up to and including the opening quote, hashes)`.
fn raw_string_at(c: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if c.get(j) == Some(&'b') || c.get(j) == Some(&'c') {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = c[j.min(c.len())..]
        .iter()
        .take_while(|&&x| x == '#')
        .count();
    (c.get(j + hashes) == Some(&'"')).then_some((j + hashes + 1 - i, hashes))
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// `toks` without the items under a `#[cfg(test)]` attribute.
fn strip_test_items(toks: &[Tok]) -> Vec<Tok> {
    const CFG_TEST: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        let is_cfg_test = toks
            .get(i..i + 7)
            .is_some_and(|w| w.iter().zip(CFG_TEST).all(|(a, b)| a.t == b));
        if !is_cfg_test {
            out.push(toks[i].clone());
            i += 1;
            continue;
        }
        i += 7;
        // Further attributes, then the item: up to a `;` or a closing `}` at depth 0.
        let mut depth = 0usize;
        let mut in_attr = false;
        while let Some(t) = toks.get(i) {
            i += 1;
            match t.t.as_str() {
                "#" if depth == 0 => in_attr = true,
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 && in_attr && t.t == "]" {
                        in_attr = false;
                    } else if depth == 0 && t.t == "}" {
                        break;
                    }
                }
                ";" if depth == 0 => break,
                _ => {}
            }
        }
    }
    out
}

const ITEM_KEYWORDS: &[&str] = &[
    "struct", "enum", "fn", "trait", "type", "const", "static", "union", "mod",
];

/// What one file (`rel` under `src/`, text `src`) defines and imports.
fn parse_file(rel: &str, src: &str) -> FileFacts {
    let toks = strip_test_items(&lex(src));
    let module = module_of(rel);
    let mut f = FileFacts {
        rel: rel.to_string(),
        module: module.clone(),
        ..FileFacts::default()
    };
    // Inline modules: (name, brace depth inside them).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let current = |inline: &[(String, usize)]| {
        let mut m = module.clone();
        m.extend(inline.iter().map(|(n, _)| n.clone()));
        m
    };
    let mut i = 0;
    while let Some(tok) = toks.get(i) {
        let t = tok.t.as_str();
        let next = toks.get(i + 1).map(|x| x.t.as_str()).unwrap_or("");
        match t {
            "{" => depth += 1,
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            "use"
                if !matches!(
                    toks.get(i.wrapping_sub(1)).map(|x| x.t.as_str()),
                    Some("::" | ".")
                ) =>
            {
                let here = current(&inline);
                let mut j = i + 1;
                let mut leaves = Vec::new();
                parse_use_tree(&toks, &mut j, &[], &mut leaves);
                for mut leaf in leaves {
                    leaf.module = here.clone();
                    f.uses.push(leaf);
                }
                i = j;
                continue;
            }
            "macro_rules" if next == "!" => {
                if let Some(name) = toks.get(i + 2).filter(|x| is_ident(&x.t)) {
                    f.defs.push((current(&inline), name.t.clone()));
                }
            }
            k if ITEM_KEYWORDS.contains(&k)
                && is_ident(next)
                && toks.get(i.wrapping_sub(1)).map(|x| x.t.as_str()) != Some("::") =>
            {
                f.defs.push((current(&inline), next.to_string()));
                if k == "mod" && toks.get(i + 2).is_some_and(|x| x.t == "{") {
                    let mut m = current(&inline);
                    m.push(next.to_string());
                    f.inline_modules.push(m);
                    inline.push((next.to_string(), depth + 1));
                }
            }
            _ if is_ident(t)
                && toks
                    .get(i.wrapping_sub(1))
                    .is_none_or(|p| p.t != "::" && p.t != ".") =>
            {
                let mut path = vec![t.to_string()];
                let mut j = i + 1;
                while toks.get(j).is_some_and(|x| x.t == "::")
                    && toks.get(j + 1).is_some_and(|x| is_ident(&x.t))
                {
                    path.push(toks[j + 1].t.clone());
                    j += 2;
                }
                if path.len() > 1 {
                    f.code_paths.push((current(&inline), path, tok.line));
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    // Every path not anchored at `crate`/`self`/`super`, for the IO rule (which matches only
    // `std::`, IO crates and `Instant::now`-like pairs, so local names here are harmless).
    let local_first = |p: &[String]| {
        matches!(
            p.first().map(String::as_str),
            Some("crate" | "self" | "super")
        )
    };
    f.external = f
        .uses
        .iter()
        .map(|u| (u.path.clone(), u.line))
        .chain(f.code_paths.iter().map(|(_, p, l)| (p.clone(), *l)))
        .filter(|(p, _)| !local_first(p))
        .collect();
    f
}

/// Parses one use tree at `*i` under `prefix`, pushing its leaves; leaves `*i` after the tree
/// (and after the closing `;` at the top level).
fn parse_use_tree(toks: &[Tok], i: &mut usize, prefix: &[String], out: &mut Vec<UseLeaf>) {
    let top = prefix.is_empty();
    let mut path = prefix.to_vec();
    let line = toks.get(*i).map_or(0, |t| t.line);
    loop {
        let Some(t) = toks.get(*i) else { return };
        match t.t.as_str() {
            "::" => *i += 1,
            "*" => {
                *i += 1;
                out.push(UseLeaf {
                    module: Vec::new(),
                    path,
                    glob: true,
                    name: None,
                    line,
                });
                break;
            }
            "{" => {
                *i += 1;
                while let Some(t) = toks.get(*i) {
                    match t.t.as_str() {
                        "}" => {
                            *i += 1;
                            break;
                        }
                        "," => *i += 1,
                        _ => parse_use_tree(toks, i, &path, out),
                    }
                }
                break;
            }
            s if is_ident(s) && s != "as" => {
                path.push(s.to_string());
                *i += 1;
                if toks.get(*i).is_none_or(|x| x.t != "::") {
                    let mut name = path.last().cloned();
                    if path.last().is_some_and(|l| l == "self") && path.len() > 1 {
                        path.pop();
                        name = path.last().cloned();
                    }
                    if toks.get(*i).is_some_and(|x| x.t == "as") {
                        let alias = toks.get(*i + 1).map(|x| x.t.clone());
                        *i += 2;
                        name = alias.filter(|a| a != "_");
                    }
                    out.push(UseLeaf {
                        module: Vec::new(),
                        path,
                        glob: false,
                        name,
                        line: t.line,
                    });
                    break;
                }
            }
            _ => break,
        }
    }
    if top {
        while toks.get(*i).is_some_and(|x| x.t != ";") {
            *i += 1;
        }
        *i += 1;
    }
}

// ------------------------------------------------------------------------------------------------
// The parser's own tests.

fn leaves(src: &str) -> Vec<(String, Option<String>)> {
    parse_file("a/b.rs", src)
        .uses
        .into_iter()
        .map(|u| {
            (
                format!("{}{}", u.path.join("::"), if u.glob { "::*" } else { "" }),
                u.name,
            )
        })
        .collect()
}

fn edges_of(files: &[(&str, &str)]) -> Vec<(String, String, String)> {
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    Graph::build(&sources)
        .edges
        .into_iter()
        .map(|e| (e.from, e.to, e.import))
        .collect()
}

fn s(a: &str, b: &str, c: &str) -> (String, String, String) {
    (a.to_string(), b.to_string(), c.to_string())
}

#[test]
fn parser_expands_grouped_use_trees() {
    let got = leaves("pub(crate) use crate::a::{b, c::{d, e as f}, self, g::*};\nuse super::super::x::Y;\nuse std::io::{self as io, Write as _};");
    let want = [
        ("crate::a::b", Some("b")),
        ("crate::a::c::d", Some("d")),
        ("crate::a::c::e", Some("f")),
        ("crate::a", Some("a")),
        ("crate::a::g::*", None),
        ("super::super::x::Y", Some("Y")),
        ("std::io", Some("io")),
        ("std::io::Write", None),
    ];
    let want: Vec<(String, Option<String>)> = want
        .iter()
        .map(|(p, n)| (p.to_string(), n.map(str::to_string)))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn parser_skips_comments_strings_and_test_items() {
    let src = r##"
        // use crate::a::Commented;
        /* use crate::a::Block; /* nested */ */
        const S: &str = "use crate::a::InString;";
        const R: &str = r#"crate::a::Raw "quoted""#;
        const C: char = '"';
        fn f<'a>(x: &'a str) -> &'a str { x }
        #[cfg(test)]
        use crate::a::TestOnly;
        #[cfg(test)]
        #[allow(dead_code)]
        mod tests { use crate::a::InTests; fn g() { crate::a::in_test_code(); } }
        use crate::a::Real;
    "##;
    assert_eq!(
        leaves(src),
        vec![("crate::a::Real".to_string(), Some("Real".to_string()))]
    );
    let f = parse_file("a/b.rs", src);
    assert!(f.code_paths.is_empty(), "{:?}", f.code_paths);
}

#[test]
fn parser_resolves_through_re_exports_to_the_defining_file() {
    let files = [
        ("lib.rs", "pub mod r; pub mod h;"),
        ("h/mod.rs", "mod e; pub use e::Code;"),
        ("h/e.rs", "pub enum Code { A }"),
        (
            "r/mod.rs",
            "pub mod d; mod i; pub mod s; pub use d::{dispatch, Crumb}; pub use s::*;",
        ),
        (
            "r/d.rs",
            "use super::i::Bound;\nuse crate::h::Code;\npub enum Crumb {}\npub fn dispatch() {}",
        ),
        ("r/i.rs", "use super::{Crumb, Snap};\npub enum Bound {}"),
        (
            "r/s.rs",
            "pub struct Snap;\nfn f() { let _ = super::d::dispatch(); self::g(); }\nfn g() {}",
        ),
    ];
    let got = edges_of(&files);
    let want = vec![
        s("h/mod.rs", "h/e.rs", "crate::h::e::Code"),
        s("r/d.rs", "h/e.rs", "crate::h::Code"),
        s("r/d.rs", "r/i.rs", "crate::r::i::Bound"),
        s("r/i.rs", "r/d.rs", "crate::r::Crumb"),
        s("r/i.rs", "r/s.rs", "crate::r::Snap"),
        s("r/mod.rs", "r/d.rs", "crate::r::d::Crumb"),
        s("r/mod.rs", "r/d.rs", "crate::r::d::dispatch"),
        s("r/mod.rs", "r/s.rs", "crate::r::s"),
        s("r/s.rs", "r/d.rs", "crate::r::d::dispatch"),
    ];
    assert_eq!(got, want);
    let g = Graph::build(&files.map(|(a, b)| (a.to_string(), b.to_string())));
    let cycles = g.cycles_in("r");
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].0, vec!["r/d.rs", "r/i.rs", "r/s.rs"]);
}

#[test]
fn parser_follows_bound_module_names_in_code_and_counts_subfolders_as_one_entry() {
    let files = [
        ("lib.rs", "pub mod m;"),
        ("m/mod.rs", "mod a; mod f; pub use f::X;"),
        (
            "m/a.rs",
            "use super::f;\nfn g() { f::json::parse(); super::X::new(); }",
        ),
        ("m/f/mod.rs", "mod json; pub use json::parse; pub struct X;"),
        ("m/f/json.rs", "pub fn parse() { crate::m::a::helper(); }"),
    ];
    let got = edges_of(&files);
    assert!(
        got.contains(&s("m/a.rs", "m/f/json.rs", "crate::m::f::json::parse")),
        "{got:?}"
    );
    assert!(
        got.contains(&s("m/a.rs", "m/f/mod.rs", "crate::m::X")),
        "{got:?}"
    );
    let g = Graph::build(&files.map(|(a, b)| (a.to_string(), b.to_string())));
    let cycles = g.cycles_in("m");
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert_eq!(cycles[0].0, vec!["m/a.rs", "m/f"]);
    assert!(g.cycles_in("m/f").is_empty());
}

#[test]
fn io_paths_are_recognised() {
    let f = parse_file(
        "r/x.rs",
        "use std::net::{SocketAddr, TcpStream};\nuse std::time::Instant;\nfn f() { let _ = Instant::now(); monoio::spawn(async {}); }",
    );
    let io: Vec<String> = f
        .external
        .iter()
        .filter(|(p, _)| io_use(p).is_some())
        .map(|(p, l)| format!("{l}:{}", p.join("::")))
        .collect();
    assert_eq!(
        io,
        vec!["1:std::net::TcpStream", "3:Instant::now", "3:monoio::spawn"]
    );
}
