//! The campaign: generate, run on both sides, compare step by step,
//! explain or confirm, shrink what is unexplained to a minimal reproducer
//! and write it down; per-class counts for the report.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fastrand::Rng;

use crate::gen::{Class, Gen, Input};
use crate::known::{explain, Diff};
use crate::norm::paths_are_safe;
use crate::repro::Repro;
use crate::runner::{run_cli, Live, Transcript};
use crate::target::Programs;
use crate::HarnessError;

/// Readline quiet time in a campaign (a difference is confirmed with a
/// longer one).
pub const IDLE: Duration = Duration::from_millis(40);
/// Readline quiet time when confirming and shrinking.
pub const IDLE_CONFIRM: Duration = Duration::from_millis(250);

/// How an input compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every step the same.
    Same,
    /// A difference with an intended-difference rule's id.
    Explained(&'static str),
    /// A difference no rule explains: first differing step.
    Unexplained(usize),
}

/// Compares two transcripts.
pub fn compare(input: &Input, t: &[Transcript; 2]) -> Verdict {
    let n = t[0].len().max(t[1].len());
    for i in 0..n {
        let q = t[0].get(i).map(Vec::as_slice).unwrap_or(b"<missing>");
        let c = t[1].get(i).map(Vec::as_slice).unwrap_or(b"<missing>");
        if q != c {
            let step: Vec<u8> = if input.class == Class::Cli {
                input.steps.join(&b' ')
            } else {
                input.steps.get(i).cloned().unwrap_or_default()
            };
            let d = Diff {
                class: input.class,
                step: &step,
                steps: &input.steps[..(i + 1).min(input.steps.len())],
                qemu: q,
                qchar: c,
            };
            return match explain(&d) {
                Some(r) => Verdict::Explained(r.id),
                None => Verdict::Unexplained(i),
            };
        }
    }
    Verdict::Same
}

/// A short key for a difference, to count each one once: the class, the
/// step's command, and the first differing lines of both sides with
/// quoted values and digits left out.
pub fn signature(input: &Input, t: &[Transcript; 2], step: usize) -> String {
    let q = t[0].get(step).cloned().unwrap_or_default();
    let c = t[1].get(step).cloned().unwrap_or_default();
    let ql: Vec<&[u8]> = q.split(|&b| b == b'\n').collect();
    let cl: Vec<&[u8]> = c.split(|&b| b == b'\n').collect();
    let k = (0..ql.len().max(cl.len()))
        .find(|&k| ql.get(k) != cl.get(k))
        .unwrap_or(0);
    let skel = |l: Option<&&[u8]>| -> String {
        let s = String::from_utf8_lossy(l.copied().unwrap_or(b""));
        let mut out = String::new();
        let mut in_q = false;
        for ch in s.chars() {
            if ch == '\'' {
                in_q = !in_q;
                out.push(ch);
            } else if !in_q && !ch.is_ascii_digit() {
                out.push(ch);
            }
        }
        out.chars().take(120).collect()
    };
    let cmd = step_command(input, step);
    format!(
        "{} {} | {} | {}",
        input.class.name(),
        cmd,
        skel(ql.get(k)),
        skel(cl.get(k))
    )
}

/// The command a step runs (QMP `execute`, the HMP word, the options).
pub fn step_command(input: &Input, step: usize) -> String {
    let s = input
        .steps
        .get(step)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .unwrap_or_default();
    match input.class {
        Class::Qmp | Class::QmpBytes => s
            .split("\"execute\": \"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("?")
            .to_string(),
        Class::Hmp => s
            .split("\"command-line\": \"")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("?")
            .trim_matches('"')
            .to_string(),
        Class::Readline => "keys".into(),
        Class::Cli => input
            .steps
            .iter()
            .map(|s| {
                String::from_utf8_lossy(s.split(|&b| b == 0).next().unwrap_or(b"")).into_owned()
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Per-class counts.
#[derive(Debug, Default, Clone)]
pub struct ClassStats {
    /// Inputs run on both sides and compared.
    pub inputs: u64,
    /// Steps compared.
    pub steps: u64,
    /// Inputs with a difference an intended rule explains, by rule.
    pub explained: BTreeMap<&'static str, u64>,
    /// Unexplained differences (distinct signatures).
    pub unexplained: Vec<String>,
    /// Differences that did not come back when run again.
    pub flaky: u64,
    /// Inputs the path guard refused.
    pub refused: u64,
}

/// Options of a campaign.
pub struct Options {
    /// Seed of the generator.
    pub seed: u64,
    /// Time budget.
    pub duration: Duration,
    /// Classes, in rotation.
    pub classes: Vec<Class>,
    /// Where reproducers go.
    pub out: PathBuf,
    /// Shrink differences.
    pub shrink: bool,
    /// Print progress every this long.
    pub progress: Duration,
    /// Most runs spent shrinking one difference.
    pub shrink_budget: usize,
}

/// Runs inputs of both sides: the live pair, or fresh processes for
/// command lines.
pub struct Bench {
    /// Programs.
    pub progs: Programs,
    /// The long-lived pair.
    pub live: Live,
}

impl Bench {
    /// Runs one input.
    pub fn run(
        &mut self,
        input: &Input,
        idle: Duration,
        rng_machine: bool,
    ) -> Result<[Transcript; 2], HarnessError> {
        match input.class {
            Class::Cli => run_cli(&self.progs, input, if rng_machine { "pc" } else { "none" }),
            _ => self.live.run(input, idle),
        }
    }

    /// Runs `input` and tells whether it still shows an unexplained
    /// difference with signature `sig` (any, if `None`).
    fn still_differs(&mut self, input: &Input, pc: bool, sig: Option<&str>) -> bool {
        if input.steps.is_empty() || !input.steps.iter().all(|s| paths_are_safe(s)) {
            return false;
        }
        match self.run(input, IDLE_CONFIRM, pc) {
            Ok(t) => match compare(input, &t) {
                Verdict::Unexplained(i) => sig.is_none_or(|s| signature(input, &t, i) == s),
                _ => false,
            },
            Err(_) => false,
        }
    }

    /// Delta debugging: fewer steps, then fewer bytes in each step, while
    /// the same difference stays. At most `budget` runs.
    pub fn shrink(&mut self, input: &Input, pc: bool, sig: &str, budget: usize) -> Input {
        let mut cur = input.clone();
        let mut runs = 0usize;
        // Steps.
        let mut chunk = cur.steps.len().div_ceil(2).max(1);
        while chunk >= 1 && runs < budget {
            let mut i = 0;
            let mut progress = false;
            while i < cur.steps.len() && runs < budget {
                if cur.steps.len() <= 1 {
                    break;
                }
                let mut cand = cur.clone();
                let end = (i + chunk).min(cand.steps.len());
                cand.steps.drain(i..end);
                runs += 1;
                if !cand.steps.is_empty() && self.still_differs(&cand, pc, Some(sig)) {
                    cur = cand;
                    progress = true;
                } else {
                    i += chunk;
                }
            }
            if !progress {
                if chunk == 1 {
                    break;
                }
                chunk /= 2;
            }
        }
        // Bytes of each step.
        for s in 0..cur.steps.len() {
            let mut chunk = cur.steps[s].len().div_ceil(2).max(1);
            while chunk >= 1 && runs < budget {
                let mut i = 0;
                let mut progress = false;
                while i < cur.steps[s].len() && runs < budget {
                    let mut cand = cur.clone();
                    let end = (i + chunk).min(cand.steps[s].len());
                    cand.steps[s].drain(i..end);
                    runs += 1;
                    if self.still_differs(&cand, pc, Some(sig)) {
                        cur = cand;
                        progress = true;
                    } else {
                        i += chunk;
                    }
                }
                if !progress {
                    if chunk == 1 {
                        break;
                    }
                    chunk /= 2;
                }
            }
        }
        cur
    }
}

/// Runs a campaign; returns the per-class counts.
pub fn campaign(bench: &mut Bench, gen: &Gen<'_>, opts: &Options) -> BTreeMap<Class, ClassStats> {
    let mut rng = Rng::with_seed(opts.seed);
    let mut stats: BTreeMap<Class, ClassStats> = opts
        .classes
        .iter()
        .map(|&c| (c, ClassStats::default()))
        .collect();
    let mut seen: HashSet<String> = HashSet::new();
    let start = Instant::now();
    let mut last_progress = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < opts.duration {
        let class = opts.classes[(n as usize) % opts.classes.len()];
        n += 1;
        let input = gen.input(class, &mut rng);
        let pc = class == Class::Cli && rng.u8(0..4) == 0;
        let st = stats.get_mut(&class).expect("class in stats");
        if !input.steps.iter().all(|s| paths_are_safe(s)) {
            st.refused += 1;
            continue;
        }
        let t = match bench.run(&input, IDLE, pc) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("difffuzz: harness error ({e}); restarting");
                let _ = bench.live.restart();
                continue;
            }
        };
        st.inputs += 1;
        st.steps += t[0].len() as u64;
        match compare(&input, &t) {
            Verdict::Same => {}
            Verdict::Explained(id) => *st.explained.entry(id).or_default() += 1,
            Verdict::Unexplained(i) => {
                let sig = signature(&input, &t, i);
                if seen.contains(&sig) {
                    st.unexplained.push(sig);
                    continue;
                }
                // Confirm (a readline burst may have been cut by timing).
                if !bench.still_differs(&input, pc, Some(&sig)) {
                    st.flaky += 1;
                    continue;
                }
                seen.insert(sig.clone());
                let small = if opts.shrink {
                    bench.shrink(&input, pc, &sig, opts.shrink_budget)
                } else {
                    input.clone()
                };
                let path = write_repro(bench, &small, pc, &sig, &opts.out);
                eprintln!(
                    "difffuzz: DIFFERENCE [{}] {}\n  reproducer: {}",
                    class.name(),
                    sig,
                    path.map(|p| p.display().to_string())
                        .unwrap_or_else(|e| format!("not written: {e}"))
                );
                st.unexplained.push(sig);
            }
        }
        if last_progress.elapsed() > opts.progress {
            last_progress = Instant::now();
            eprintln!(
                "difffuzz: {:.0}s {}",
                start.elapsed().as_secs_f64(),
                summary_line(&stats)
            );
        }
    }
    stats
}

/// Runs `input` on freshly started sides and writes a reproducer with
/// QEMU's transcript.
fn write_repro(
    bench: &mut Bench,
    input: &Input,
    pc: bool,
    sig: &str,
    out: &Path,
) -> Result<PathBuf, HarnessError> {
    if input.class != Class::Cli {
        bench.live.restart()?;
    }
    let t = bench.run(input, IDLE_CONFIRM, pc)?;
    let r = Repro {
        class: input.class,
        machine_pc: pc,
        note: sig.to_string(),
        steps: input.steps.clone(),
        qemu: t[0].clone(),
        qchar: Some(t[1].clone()),
    };
    std::fs::create_dir_all(out).map_err(|e| HarnessError::io("create out dir", e))?;
    let mut h: u64 = 1469598103934665603;
    for b in sig.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(1099511628211);
    }
    let p = out.join(format!("{}-{:016x}.repro", input.class.name(), h));
    std::fs::write(&p, r.to_text()).map_err(|e| HarnessError::io("write reproducer", e))?;
    Ok(p)
}

/// One line of counts.
pub fn summary_line(stats: &BTreeMap<Class, ClassStats>) -> String {
    stats
        .iter()
        .map(|(c, s)| {
            format!(
                "{}: {} in, {} expl, {} unexpl, {} flaky",
                c.name(),
                s.inputs,
                s.explained.values().sum::<u64>(),
                s.unexplained.len(),
                s.flaky
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
