//! The differences differential fuzzing found and qchar fixed, kept as
//! tests: each file in `tests/data/` holds an input and what QEMU 7.2 sent
//! back for it (normalised). The input is replayed on a freshly started
//! qchar and must give QEMU's bytes; where QEMU is installed it is replayed
//! on QEMU too, live, and must still give them. `tests/data/intended/`
//! holds inputs where qchar differs on purpose and got the detail of its
//! side wrong first: replayed on qchar, the difference must be the one
//! the rule named at the start of the note explains. Also: the intended
//! differences the harness knows are exactly the rows of
//! docs/differences.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use qchar_difffuzz::known::without_stale_errno;
use qchar_difffuzz::repro::{escape_line, replay, Repro};
use qchar_difffuzz::target::{qemu_available, Programs, Side};

/// The built qchar binary (built here if missing: it is another package's).
fn qchar_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "-q", "-p", "qchar", "--bin", "qchar"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        cmd.arg("--release");
    }
    let st = cmd.status().expect("cargo build -p qchar");
    assert!(st.success(), "cargo build -p qchar failed");
    profile_dir.join("qchar")
}

fn files() -> Vec<PathBuf> {
    files_in("tests/data")
}

fn files_in(sub: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(sub);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/data")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "repro"))
        .collect();
    v.sort();
    v
}

fn programs(root: &Path) -> Programs {
    let p = Programs {
        qemu: PathBuf::from("qemu-system-x86_64"),
        qchar: qchar_bin(),
        root: root.to_path_buf(),
    };
    p.prepare().expect("prepare directories");
    p
}

/// The first step whose transcript differs, shown.
fn first_difference(want: &[Vec<u8>], got: &[Vec<u8>]) -> Option<String> {
    (0..want.len().max(got.len())).find_map(|i| {
        let (w, g) = (want.get(i), got.get(i));
        (w != g).then(|| {
            format!(
                "step {i}\n  want: {}\n  got:  {}",
                w.map(|b| escape_line(b)).unwrap_or_default(),
                g.map(|b| escape_line(b)).unwrap_or_default()
            )
        })
    })
}

fn short_root() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("dfzt")
        .tempdir_in("/tmp")
        .expect("temp dir")
}

#[test]
fn qchar_answers_as_qemu_did() {
    let root = short_root();
    let progs = programs(root.path());
    let mut failures = Vec::new();
    let files = files();
    assert!(!files.is_empty(), "no reproducers in tests/data");
    for f in &files {
        let r = Repro::parse(&std::fs::read_to_string(f).unwrap()).unwrap();
        assert!(
            !r.qemu.is_empty(),
            "{}: no recorded QEMU transcript",
            f.display()
        );
        let got =
            replay(&progs, Side::Qchar, &r).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if let Some(d) = first_difference(&r.qemu, &got) {
            failures.push(format!("{} ({}): {d}", f.display(), r.note));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn qemu_still_answers_as_recorded() {
    if !qemu_available(Path::new("qemu-system-x86_64")) {
        assert!(
            std::env::var_os("QCHAR_TEST_REQUIRE_ALL").is_none(),
            "QEMU 7.2 is missing and QCHAR_TEST_REQUIRE_ALL is set"
        );
        eprintln!(
            "skipping qemu_still_answers_as_recorded: qemu-system-x86_64 7.2 is not installed"
        );
        return;
    }
    let root = short_root();
    let progs = programs(root.path());
    let mut failures = Vec::new();
    for f in files().iter().chain(&files_in("tests/data/intended")) {
        let r = Repro::parse(&std::fs::read_to_string(f).unwrap()).unwrap();
        let mut got =
            replay(&progs, Side::Qemu, &r).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let mut want = r.qemu.clone();
        if r.note.starts_with("stale-errno") {
            // The errno QEMU appends is whatever its thread had last: it
            // differs between machines. It must still append one.
            let key: &[u8] = b"Failed to create a socket: ";
            if !got.iter().any(|t| t.windows(key.len()).any(|w| w == key)) {
                failures.push(format!("{}: QEMU appends no errno any more", f.display()));
            }
            got = got.iter().map(|t| without_stale_errno(t)).collect();
            want = want.iter().map(|t| without_stale_errno(t)).collect();
        }
        if let Some(d) = first_difference(&want, &got) {
            failures.push(format!("{}: {d}", f.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn qchar_differs_as_its_rule_says() {
    use qchar_difffuzz::campaign::{compare, Verdict};
    let root = short_root();
    let progs = programs(root.path());
    let files = files_in("tests/data/intended");
    assert!(!files.is_empty(), "no reproducers in tests/data/intended");
    let mut failures = Vec::new();
    for f in &files {
        let r = Repro::parse(&std::fs::read_to_string(f).unwrap()).unwrap();
        let rule = r.note.split(':').next().unwrap_or_default().to_string();
        let got =
            replay(&progs, Side::Qchar, &r).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let v = compare(&r.input(), &[r.qemu.clone(), got]);
        if !matches!(v, Verdict::Explained(id) if id == rule) {
            failures.push(format!("{}: {v:?}, want Explained({rule:?})", f.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn intended_differences_are_the_rows_of_the_table() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/differences.md"),
    )
    .expect("docs/differences.md");
    // Rows: `| `id` | ...`.
    let rows: Vec<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(String::from)
        .collect();
    use qchar_difffuzz::known::{MASKS, RULES, UNSEEN};
    let rules: Vec<String> = RULES
        .iter()
        .map(|r| r.id.to_string())
        .chain(MASKS.iter().chain(UNSEEN).map(|(id, _)| id.to_string()))
        .collect();
    for r in &rules {
        assert!(
            rows.contains(r),
            "rule {r} has no row in docs/differences.md"
        );
    }
    for r in &rows {
        assert!(
            rules.contains(r),
            "docs/differences.md row {r} has no rule in known.rs"
        );
    }
}
