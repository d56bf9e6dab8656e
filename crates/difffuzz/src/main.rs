//! `difffuzz`: runs a differential fuzzing campaign of qchar against QEMU
//! 7.2 and prints per-class counts; exits 1 if a difference no intended
//! rule explains was found (its reproducer is written to `--out`).
//!
//! ```text
//! difffuzz [--seed N] [--seconds S] [--classes qmp,qmp-bytes,hmp,readline,cli]
//!          [--out DIR] [--qchar PATH] [--qemu PATH] [--no-shrink]
//!          [--shrink-budget RUNS] [--progress SECONDS]
//! difffuzz --explain FILE...   # today's verdict on reproducers (nothing run)
//! difffuzz --record FILE...    # run reproducers on both sides, write transcripts
//! ```
//!
//! Environment: `DIFFFUZZ_PORT_BASE` moves the ports the sides use (two
//! campaigns at once need different ones), `DIFFFUZZ_DEBUG` says why the
//! processes are restarted.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use qchar_difffuzz::campaign::{campaign, summary_line, Bench, Options};
use qchar_difffuzz::gen::{weighted_commands, Class, Gen, Seeds};
use qchar_difffuzz::runner::Live;
use qchar_difffuzz::schema::Schema;
use qchar_difffuzz::target::{qemu_available, Conn, Programs};

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("difffuzz: {e:#}");
            std::process::exit(2);
        }
    }
}

fn default_qchar() -> PathBuf {
    // Beside this binary (cargo puts both in target/<profile>/).
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("qchar")))
        .unwrap_or_else(|| PathBuf::from("qchar"))
}

fn run() -> Result<i32> {
    let mut seed = 1u64;
    let mut seconds = 60u64;
    let mut classes: Vec<Class> = Class::ALL.to_vec();
    let mut out = std::env::temp_dir().join("difffuzz-out");
    let mut qchar = default_qchar();
    let mut qemu = PathBuf::from("qemu-system-x86_64");
    let mut shrink = true;
    let mut progress = 30u64;
    let mut shrink_budget = 200usize;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("--explain") {
        return explain_files(&argv[1..]);
    }
    if argv.first().map(String::as_str) == Some("--record") {
        return record_files(&argv[1..], &default_qchar());
    }
    let mut args = argv.into_iter();
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--seed" => seed = val()?.parse()?,
            "--seconds" => seconds = val()?.parse()?,
            "--progress" => progress = val()?.parse()?,
            "--classes" => {
                classes = val()?
                    .split(',')
                    .map(|c| Class::from_name(c).with_context(|| format!("unknown class {c}")))
                    .collect::<Result<_>>()?
            }
            "--out" => out = val()?.into(),
            "--qchar" => qchar = val()?.into(),
            "--qemu" => qemu = val()?.into(),
            "--no-shrink" => shrink = false,
            "--shrink-budget" => shrink_budget = val()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    if !qemu_available(&qemu) {
        bail!("QEMU 7.2 ({}) cannot be run", qemu.display());
    }
    if !qchar.exists() {
        bail!(
            "qchar binary {} not found (cargo build -p qchar)",
            qchar.display()
        );
    }
    let root = tempfile::Builder::new()
        .prefix("dfz")
        .tempdir_in("/tmp")
        .context("temp dir")?;
    let progs = Programs {
        qemu,
        qchar: std::fs::canonicalize(&qchar)?,
        root: root.path().to_path_buf(),
    };
    progs.prepare()?;
    let live = Live::start(&progs)?;
    let schema = fetch_schema(&progs)?;
    let common = common_commands(&progs, &schema)?;
    let seeds = Seeds::load(&repo);
    eprintln!(
        "difffuzz: seed {seed}, {seconds}s, classes {:?}; {} commands in common, {} QMP seeds, {} option seeds, {} key seeds",
        classes.iter().map(|c| c.name()).collect::<Vec<_>>(),
        common.len(),
        seeds.qmp.len(),
        seeds.opts.len(),
        seeds.keys.len()
    );
    let gen = Gen {
        schema: &schema,
        commands: weighted_commands(&common),
        seeds: &seeds,
    };
    let mut bench = Bench { progs, live };
    let opts = Options {
        seed,
        duration: Duration::from_secs(seconds),
        classes,
        out: out.clone(),
        shrink,
        progress: Duration::from_secs(progress),
        shrink_budget,
    };
    let stats = campaign(&mut bench, &gen, &opts);
    println!(
        "difffuzz: seed {seed}, {seconds}s, {} restarts",
        bench.live.restarts
    );
    let mut unexplained = 0;
    for (c, s) in &stats {
        let distinct: std::collections::BTreeSet<&String> = s.unexplained.iter().collect();
        println!(
            "{:10} inputs {:6}  steps {:7}  explained {:5}  unexplained {:3} ({} distinct)  flaky {}  refused {}",
            c.name(),
            s.inputs,
            s.steps,
            s.explained.values().sum::<u64>(),
            s.unexplained.len(),
            distinct.len(),
            s.flaky,
            s.refused
        );
        for (id, n) in &s.explained {
            let status = qchar_difffuzz::known::RULES
                .iter()
                .find(|r| r.id == *id)
                .map_or("?", |r| match r.status {
                    qchar_difffuzz::known::Status::Intended => "intended",
                    qchar_difffuzz::known::Status::Open => "known, open",
                });
            println!("{:12} {id} ({status}): {n}", "");
        }
        for d in distinct {
            println!("{:12} UNEXPLAINED {d}", "");
        }
        unexplained += s.unexplained.len();
    }
    println!("{}", summary_line(&stats));
    if unexplained > 0 {
        println!("reproducers in {}", out.display());
        return Ok(1);
    }
    Ok(0)
}

/// `--explain FILE...`: the verdict on reproducers' recorded transcripts
/// under today's rules (nothing is run).
fn explain_files(files: &[String]) -> Result<i32> {
    use qchar_difffuzz::campaign::{compare, Verdict};
    let mut unexplained = 0;
    for f in files {
        let r = qchar_difffuzz::repro::Repro::parse(&std::fs::read_to_string(f)?)?;
        let Some(c) = &r.qchar else {
            continue;
        };
        let v = compare(&r.input(), &[r.qemu.clone(), c.clone()]);
        if matches!(v, Verdict::Unexplained(_)) {
            unexplained += 1;
        }
        println!("{f}: {v:?}");
    }
    Ok(i32::from(unexplained > 0))
}

/// `--record FILE...`: runs each reproducer's steps on both sides, freshly
/// started, and writes their transcripts into the file.
fn record_files(files: &[String], qchar: &std::path::Path) -> Result<i32> {
    let root = tempfile::Builder::new().prefix("dfz").tempdir_in("/tmp")?;
    let progs = Programs {
        qemu: PathBuf::from("qemu-system-x86_64"),
        qchar: std::fs::canonicalize(qchar)?,
        root: root.path().to_path_buf(),
    };
    progs.prepare()?;
    for f in files {
        let mut r = qchar_difffuzz::repro::Repro::parse(&std::fs::read_to_string(f)?)?;
        r.qemu = qchar_difffuzz::repro::replay(&progs, qchar_difffuzz::target::Side::Qemu, &r)?;
        r.qchar = Some(qchar_difffuzz::repro::replay(
            &progs,
            qchar_difffuzz::target::Side::Qchar,
            &r,
        )?);
        let same = r.qchar.as_ref() == Some(&r.qemu);
        std::fs::write(f, r.to_text())?;
        println!("{f}: {}", if same { "same" } else { "DIFFERENT" });
    }
    Ok(0)
}

/// QEMU's schema, from a QEMU started for the purpose.
fn fetch_schema(progs: &Programs) -> Result<Schema> {
    let v = qmp_once(
        progs,
        qchar_difffuzz::target::Side::Qemu,
        "query-qmp-schema",
    )?;
    Ok(Schema::from_value(&v))
}

/// The commands qchar lists that QEMU's schema has too.
fn common_commands(progs: &Programs, schema: &Schema) -> Result<Vec<String>> {
    let v = qmp_once(progs, qchar_difffuzz::target::Side::Qchar, "query-commands")?;
    let names: Vec<String> = v
        .as_array()
        .context("query-commands")?
        .iter()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .filter(|n| !n.starts_with("x-") && schema.has_command(n))
        .collect();
    Ok(names)
}

/// Runs one command on a program started for it; returns its `return`.
fn qmp_once(
    progs: &Programs,
    side: qchar_difffuzz::target::Side,
    cmd: &str,
) -> Result<serde_json::Value> {
    let dir = progs.root.join(format!("once-{}", side.name()));
    std::fs::create_dir_all(&dir)?;
    let sock = dir.join("m.sock");
    let args: Vec<String> = [
        "-nodefaults",
        "-display",
        "none",
        "-machine",
        "none",
        "-accel",
        "kvm",
        "-S",
        "-qmp",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("unix:{},server=on,wait=off", sock.display())])
    .collect();
    let mut p = qchar_difffuzz::target::Proc::start(&progs.program(side), &args, &dir)?;
    let s = qchar_difffuzz::target::connect_unix(&sock, Duration::from_secs(10), None, || true)?;
    let mut c = Conn::new(s);
    let lim = Duration::from_secs(10);
    c.lines_until(b"\"QMP\"", lim);
    c.send(b"{\"execute\":\"qmp_capabilities\"}\n");
    c.lines_until(b"\"return\"", lim);
    c.send(format!("{{\"execute\":\"{cmd}\",\"id\":\"once\"}}\n").as_bytes());
    let (lines, _) = c.lines_until(b"\"id\": \"once\"", lim);
    p.kill();
    let v: serde_json::Value = serde_json::from_slice(lines.last().context("no reply")?)?;
    v.get("return")
        .cloned()
        .with_context(|| format!("{cmd}: {v}"))
}
