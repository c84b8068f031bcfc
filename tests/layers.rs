//! The worker port holds (DESIGN.md §7 "Workers never take a lock on the request path"): the data
//! plane (`src/proxy`) names nothing of the control plane, the control plane names nothing of the
//! proxy, and the two leaves they share (`src/admission`, `src/port.rs`) import nothing else from
//! the crate. A forbidden import fails here instead of waiting for a review.

use std::path::Path;

/// Every `.rs` file under `dir` (recursively) with its text, comments included (a doc line that
/// names a path is harmless, so lines starting with `//` are skipped).
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let code: String = std::fs::read_to_string(&p)
                    .unwrap()
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect::<Vec<_>>()
                    .join("\n");
                out.push((p.display().to_string(), code));
            }
        }
    }
    out
}

fn src(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(rel)
}

fn assert_none(dir: &str, forbidden: &[&str]) {
    for (path, code) in sources(&src(dir)) {
        for f in forbidden {
            assert!(!code.contains(f), "{path} uses `{f}`");
        }
    }
}

#[test]
fn the_proxy_reaches_the_control_plane_only_through_the_port() {
    assert_none("proxy", &["crate::control", "Arc<Control>", "Control::"]);
}

#[test]
fn the_control_plane_does_not_import_the_proxy() {
    assert_none("control", &["crate::proxy"]);
}

#[test]
fn admission_and_the_port_are_leaves() {
    assert_none("admission", &["crate::"]);
    let port = std::fs::read_to_string(src("port.rs")).unwrap();
    assert!(
        !port.contains("crate::"),
        "src/port.rs imports from the crate"
    );
}
