//! `totem-sim`: runs the Totem protocol under a seeded, simulated network and checks extended
//! virtual synchrony on every event.
//!
//! ```text
//! cargo run --release -p totem-sim -- --seeds 0..500            # CI: 500 seeds, all cores
//! cargo run --release -p totem-sim -- --seed 42 --trace         # replay one seed, every step
//! cargo run --release -p totem-sim -- --soak 100000             # the long soak (seeds 0..100000)
//! cargo run --release -p totem-sim -- --soak 100000 --from 7000000   # a soak on fresh seeds
//! cargo run --release -p totem-sim -- check-trace /tmp/evsft-work/crash/traces   # real traces
//! ```
//!
//! Every failure prints the single command that replays it. Flags that change what a seed
//! expands into (`--nodes`, `--no-*`, `--loss`, `--dup`) are part of that command.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant as WallInstant};

use totem_sim::plan::{
    inject_by_name, inject_engine_by_name, FaultKinds, Options, Plan, TraceMode,
};
use totem_sim::sim::{install_quiet_panic_hook, run_plan, run_seed, RunResult};

const USAGE: &str = "\
usage: totem-sim --seed S [flags] [--trace]     run one seed, print its option set (and trace)
       totem-sim --seeds START..END [flags] [--jobs J]   run a range of seeds in parallel
       totem-sim --soak N [--from S] [flags] [--jobs J]  run N seeds starting at S (default 0)
       totem-sim check-trace [check flags] DIR_OR_FILE...  check the JSON-lines traces of real
                            node processes (tests/netns/worker.py): C1-C6, D1-D9, lost messages

flags that shape a seed's run (part of every replay command):
  --nodes N            ring size (default: 2..=9 chosen by the seed)
  --loss P             loss probability on every link during the fault phase (0..1)
  --dup P              duplication probability on every link (0..1)
  --no-faults          no faults of any kind (no loss or duplication either)
  --accelerated        Accelerated Ring: accelerated_window 1..=max_messages, from the seed
  --groups             every node runs the service engine (evs-engine) with handles that
                       open, close, join, leave and send to groups; the group properties
                       G1-G4 are checked besides the EVS ones
  --long               long-run mode: connectivity faults (one-way, non-transitive,
                       partition, a crash) each held for tens of seconds; after each fault
                       settles, a steady window checks S1-S3 (membership settled in rings
                       connected both ways, no reconfiguration, own messages delivered)
  --minutes M          with --long: episodes follow each other for M simulated minutes
                       of faults per seed (default: 3-6 episodes)
  --no-loss --no-dup --no-crash --no-leave --no-partition --no-one-way --no-clog
  --no-pause --no-token-drop --no-late-start --no-burst
  --no-slow-link --no-bandwidth --no-processing --no-lost-disk
  --no-crash-mid-send --no-clock
                       never use that fault kind
  --inject BUG         run with a deliberate protocol bug, to test the oracle (repeatable):
                       safe-as-agreed | safe-one-visit | no-install-holdback; with --groups
                       also group-misroute | group-drop-last-target | group-ignore-leaves |
                       group-keep-departed | group-stale-report |
                       group-silent-close

other flags:
  --trace              print every step of the run (with --seed)
  --jobs J             worker threads (default: available cores)
  --help

check-trace flags (a directory stands for its *.jsonl files; exit 0 clean, 1 violations or
lost messages, 2 bad input):
  --json               print the report as one JSON object instead of a summary
  --outsider N         node N is not meant to join (repeatable): owed nothing, not live
  --faults FILE        JSON list of injected faults, each {\"t\": epoch seconds, \"kind\": ...}:
                       the report gives each one's time to the next regular configuration
  --token-ms N --consensus-ms N   the timers, for the faults' bound (default 1000, 1200)";

enum Mode {
    One(u64),
    Range(u64, u64),
}

struct Args {
    mode: Mode,
    opts: Options,
    jobs: usize,
}

fn parse_prob(flag: &str, v: &str) -> Result<f64, String> {
    let p: f64 = v
        .parse()
        .map_err(|_| format!("{flag}: not a number: {v}"))?;
    if !(0.0..=1.0).contains(&p) {
        return Err(format!("{flag}: must be within 0..=1, got {v}"));
    }
    Ok(p)
}

fn parse_u64(flag: &str, v: &str) -> Result<u64, String> {
    v.replace('_', "")
        .parse()
        .map_err(|_| format!("{flag}: not a non-negative integer: {v}"))
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut opts = Options::default();
    let mut mode = None;
    let mut soak: Option<u64> = None;
    let mut from = 0u64;
    let mut jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match a.as_str() {
            "--help" | "-h" => return Err(String::new()),
            "--seed" => mode = Some(Mode::One(parse_u64(a, &value(a)?)?)),
            "--seeds" => {
                let v = value(a)?;
                let (s, e) = v
                    .split_once("..")
                    .ok_or_else(|| format!("--seeds: expected START..END, got {v}"))?;
                let (s, e) = (parse_u64(a, s)?, parse_u64(a, e)?);
                if e <= s {
                    return Err(format!("--seeds: empty range {v}"));
                }
                mode = Some(Mode::Range(s, e));
            }
            "--soak" => soak = Some(parse_u64(a, &value(a)?)?),
            "--from" => from = parse_u64(a, &value(a)?)?,
            "--nodes" => {
                let n = parse_u64(a, &value(a)?)?;
                if !(1..=256).contains(&n) {
                    return Err(format!("--nodes: must be within 1..=256, got {n}"));
                }
                opts.nodes = Some(n as usize);
            }
            "--jobs" => jobs = (parse_u64(a, &value(a)?)? as usize).max(1),
            "--loss" => opts.loss = Some(parse_prob(a, &value(a)?)?),
            "--dup" => opts.dup = Some(parse_prob(a, &value(a)?)?),
            "--trace" => opts.trace = TraceMode::Print,
            "--no-faults" => opts.faults = FaultKinds::NONE,
            "--accelerated" => opts.accelerated = true,
            "--long" => opts.long = true,
            "--groups" => opts.groups = true,
            "--minutes" => {
                let m = parse_u64(a, &value(a)?)?;
                if m == 0 {
                    return Err("--minutes: needs at least 1".into());
                }
                opts.minutes = Some(m);
            }
            "--inject" => {
                let v = value(a)?;
                if !inject_by_name(&mut opts.inject, &v)
                    && !inject_engine_by_name(&mut opts.engine_bugs, &v)
                {
                    return Err(format!("--inject: unknown bug {v}"));
                }
            }
            other => {
                let kind = other
                    .strip_prefix("--no-")
                    .ok_or_else(|| format!("unknown argument: {other}"))?;
                let mut found = false;
                for (name, on) in opts.faults.flags() {
                    if name == kind {
                        *on = false;
                        found = true;
                    }
                }
                if !found {
                    return Err(format!("unknown fault kind: {other}"));
                }
            }
        }
    }
    if let Some(n) = soak {
        if n == 0 {
            return Err("--soak: needs at least one seed".into());
        }
        mode = Some(Mode::Range(from, from.saturating_add(n)));
    }
    let mode = mode.ok_or("one of --seed, --seeds or --soak is required")?;
    if opts.minutes.is_some() && !opts.long {
        return Err("--minutes needs --long".into());
    }
    if opts.engine_bugs != Default::default() && !opts.groups {
        return Err("--inject group-...: needs --groups (only engines have those bugs)".into());
    }
    if opts.trace != TraceMode::Off && !matches!(mode, Mode::One(_)) {
        return Err("--trace needs a single --seed".into());
    }
    Ok(Args { mode, opts, jobs })
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("check-trace") {
        return check_trace(&argv[1..]);
    }
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => return usage_exit(&e),
    };
    install_quiet_panic_hook();
    match args.mode {
        Mode::One(seed) => run_one(seed, &args.opts),
        Mode::Range(start, end) => run_range(start, end, &args.opts, args.jobs),
    }
}

/// A command line that did not parse: an empty error is a request for help (usage, status
/// 0); any other is printed with the usage (status 2).
fn usage_exit(e: &str) -> ExitCode {
    if e.is_empty() {
        println!("{USAGE}");
        ExitCode::SUCCESS
    } else {
        eprintln!("totem-sim: {e}\n\n{USAGE}");
        ExitCode::from(2)
    }
}

/// `check-trace`: the EVS checklist over the traces of real processes.
fn check_trace(argv: &[String]) -> ExitCode {
    use totem_sim::trace_check::{check_files, CheckOptions, Fault};
    let mut opts = CheckOptions::default();
    let mut json = false;
    let mut paths = Vec::new();
    let parsed: Result<(), String> = (|| {
        let mut it = argv.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().cloned().ok_or(format!("{a}: missing value"));
            match a.as_str() {
                "--help" | "-h" => return Err(String::new()),
                "--json" => json = true,
                "--outsider" => opts.outsiders.push(parse_u64(a, &value()?)?),
                "--token-ms" => opts.token_ms = parse_u64(a, &value()?)?,
                "--consensus-ms" => opts.consensus_ms = parse_u64(a, &value()?)?,
                "--faults" => {
                    let f = value()?;
                    let text = std::fs::read_to_string(&f).map_err(|e| format!("{f}: {e}"))?;
                    opts.faults = Fault::parse_list(&f, &text).map_err(|e| e.to_string())?;
                }
                s if s.starts_with("--") => return Err(format!("check-trace: unknown flag {s}")),
                s => paths.push(std::path::PathBuf::from(s)),
            }
        }
        if paths.is_empty() {
            return Err("check-trace: no trace given".into());
        }
        Ok(())
    })();
    if let Err(e) = parsed {
        return usage_exit(&e);
    }
    let report = match check_files(&paths, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("totem-sim check-trace: bad trace: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.summary());
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run_one(seed: u64, opts: &Options) -> ExitCode {
    let plan = Plan::from_seed(seed, opts);
    print!("{plan}");
    let _ = std::io::stdout().flush();
    let wall = WallInstant::now();
    let r = run_plan(&plan, opts);
    let wall = wall.elapsed();
    let s = &r.summary;
    println!(
        "seed {seed}: {} — {} delivered, {} configurations, {} submitted ({} refused: queue full), {} crashes or leaves, {} restarts; {} packets sent, {} lost, {} cut, {} dropped by rules, {} duplicated; virtual {} in {} steps, wall {:.3}s{}",
        if r.passed() { "passed" } else { "FAILED" },
        s.delivered,
        s.configurations,
        s.submitted,
        s.refused_full,
        s.crashes,
        s.restarts,
        s.transmits,
        s.net.lost,
        s.net.cut,
        s.net.dropped,
        s.net.duplicated,
        s.end,
        s.steps,
        wall.as_secs_f64(),
        r.converged
            .map(|ring| format!(", converged on ring {ring}"))
            .unwrap_or_default(),
    );
    if opts.groups {
        println!(
            "seed {seed}: {} messages handed to handles, {} group changes reported",
            s.handle_messages, s.group_changes
        );
    }
    match &r.outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            println!("seed {seed}: {f}");
            println!("replay: {}", opts.replay_command(seed));
            ExitCode::FAILURE
        }
    }
}

struct Done {
    seed: u64,
    result: RunResult,
    wall: Duration,
}

fn run_range(start: u64, end: u64, opts: &Options, jobs: usize) -> ExitCode {
    let total = end - start;
    let next = Arc::new(AtomicU64::new(start));
    let (tx, rx) = mpsc::channel::<Done>();
    let wall = WallInstant::now();
    let workers: Vec<_> = (0..jobs.min(total as usize).max(1))
        .map(|_| {
            let next = Arc::clone(&next);
            let tx = tx.clone();
            let opts = opts.clone();
            std::thread::spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    break;
                }
                let t = WallInstant::now();
                let result = run_seed(seed, &opts);
                let done = Done {
                    seed,
                    result,
                    wall: t.elapsed(),
                };
                if tx.send(done).is_err() {
                    break;
                }
            })
        })
        .collect();
    drop(tx);

    let mut passed = 0u64;
    let mut failed: Vec<u64> = Vec::new();
    let mut delivered = 0u64;
    let mut configurations = 0u64;
    let (mut handle_messages, mut group_changes) = (0u64, 0u64);
    let mut slowest = (0u64, Duration::ZERO);
    let mut seen = 0u64;
    let mut last_progress = WallInstant::now();
    for d in rx {
        seen += 1;
        delivered += d.result.summary.delivered;
        configurations += d.result.summary.configurations;
        handle_messages += d.result.summary.handle_messages;
        group_changes += d.result.summary.group_changes;
        if d.wall > slowest.1 {
            slowest = (d.seed, d.wall);
        }
        match &d.result.outcome {
            Ok(()) => passed += 1,
            Err(f) => {
                // One line per failure, whatever the detail says: greppable, sortable.
                let detail = f.to_string().replace('\n', " ");
                println!(
                    "FAIL seed {} ({} nodes): {detail} | replay: {}",
                    d.seed,
                    d.result.nodes,
                    opts.replay_command(d.seed)
                );
                failed.push(d.seed);
            }
        }
        if last_progress.elapsed() > Duration::from_secs(30) {
            last_progress = WallInstant::now();
            eprintln!(
                "totem-sim: {seen}/{total} seeds, {} failed, {:.0}s",
                failed.len(),
                wall.elapsed().as_secs_f64()
            );
        }
    }
    for w in workers {
        let _ = w.join();
    }
    failed.sort_unstable();
    if !failed.is_empty() {
        let list: Vec<String> = failed.iter().map(u64::to_string).collect();
        println!("failing seeds: {}", list.join(" "));
    }
    println!(
        "totem-sim: {total} seeds, {passed} passed, {} failed, {delivered} messages delivered, {configurations} configurations, wall {:.1}s (slowest seed {} {:.2}s)",
        failed.len(),
        wall.elapsed().as_secs_f64(),
        slowest.0,
        slowest.1.as_secs_f64()
    );
    if opts.groups {
        println!(
            "totem-sim: {handle_messages} messages handed to handles, {group_changes} group changes reported"
        );
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        let v: Vec<String> = s.split_whitespace().map(String::from).collect();
        parse_args(&v)
    }

    #[test]
    fn parses_the_documented_forms() {
        let a = args("--seeds 0..500 --nodes 3 --jobs 2").unwrap();
        assert!(matches!(a.mode, Mode::Range(0, 500)));
        assert_eq!((a.opts.nodes, a.jobs), (Some(3), 2));
        let a = args("--seed 42 --trace --no-crash --loss 0.25").unwrap();
        assert!(matches!(a.mode, Mode::One(42)));
        assert_eq!(a.opts.trace, TraceMode::Print);
        assert!(!a.opts.faults.crash && a.opts.faults.partition);
        assert_eq!(a.opts.loss, Some(0.25));
        let a = args("--soak 100_000 --from 7").unwrap();
        assert!(matches!(a.mode, Mode::Range(7, 100_007)));
        let a = args("--seed 1 --no-faults").unwrap();
        assert_eq!(a.opts.faults, FaultKinds::NONE);
        let a = args("--seeds 0..9 --inject safe-one-visit").unwrap();
        assert!(a.opts.inject.safe_one_visit && !a.opts.inject.safe_as_agreed);
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "--seeds 5..5",
            "--seeds 5",
            "--seed x",
            "--loss 2",
            "--no-gremlins --seed 1",
            "--seeds 0..10 --trace",
            "--bogus",
            "--seed 1 --inject",
            "--seed 1 --inject off-by-one",
            "--seed 1 --minutes 3",
            "--seed 1 --long --minutes 0",
        ] {
            assert!(args(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replay_command_parses_back_to_the_same_options() {
        let a = args("--seed 9 --nodes 4 --no-clog --no-pause --no-clock --no-burst --loss 0.1 --dup 0.02 --long --minutes 7 --inject no-install-holdback --inject safe-as-agreed").unwrap();
        let cmd = a.opts.replay_command(9);
        let tail = cmd.split(" -- ").nth(1).unwrap().replace(" --trace", "");
        let b = args(&tail).unwrap();
        assert_eq!(a.opts, b.opts);
    }
}
