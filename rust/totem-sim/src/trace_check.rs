//! The EVS checker over the traces of real node processes: the JSON lines that
//! `tests/netns/worker.py` writes, one file per process, read after the run.
//!
//! The checklist is the [`oracle`](crate::oracle)'s (`shared/docs/totem-reference.md` §4.6,
//! [`Property`] C1-C6, D1-D9), decided over whole traces instead of online: the oracle sees
//! every submission and multicast of the simulator and stops at the first bad step, while a
//! real process's trace shows only what its handle received, with a handle filter and a host
//! clock in between, so the forms below are the ones those traces can support. Run it as
//! `totem-sim check-trace DIR_OR_FILES...` (see `main.rs`) or through [`check_files`].
//!
//! A *process* is one incarnation of a node (`(node, inc)`, written `n<node>#<inc>`);
//! membership lists name node ids. A trace without an `end` line is a crashed process: it
//! failed at its last line. A process that ended cleanly (`end`) failed there too, but only
//! after the harness let every live process deliver everything (see `Cluster.stop` in
//! `tests/netns/harness.py`), so it still owes what EVS promises before that point.
//!
//! Configurations: a regular one is keyed by its ring id `(rep, seq)`; a transitional one by
//! `(previous regular ring, next ring)` (the event carries only the next ring id, and the two
//! sides of a merge install different transitional configurations with the same one).
//!
//! Messages: `(node, inc, k)` (the worker's payload). Agreed order: by ring (the ring's seq,
//! then rep), then the `seq` of the multicast that completed the message, then the position
//! within that multicast (several messages packed into one multicast share a seq; their order
//! is the order every process delivered them in).
//!
//! Handle filtering: a handle receives the messages of its group only from the point where its
//! own join is delivered. A worker joins once, at start, so each process has one "join point"
//! in its first ring with others; messages of that ring ordered before the join are not owed
//! to it. The checker cannot see the join's seq, so it owes a process, on the ring where it
//! joined, only the messages from the first one it delivered after its join (the *cutoff*);
//! everywhere else, all.
//!
//! Properties, in these forms:
//!
//! * C1 self inclusion; C2 one member set per regular ring id, its representative a member,
//!   members a strictly ascending set; C3 regular ring seqs increase per process and above
//!   earlier incarnations of the node, and a transitional configuration announces a higher
//!   ring; C4 R, T, R alternation from a regular first configuration, T ⊆ both regulars,
//!   `left`/`joined` consistent; C5 a member kept in a transitional configuration installed
//!   the ring before it, and (strict) every member of every regular ring installed before the
//!   run's stop installs it, unless it crashed or every installer that did not crash went on
//!   to a transitional configuration without it; C6 one member set per transitional key.
//! * D1 each message delivered at most once per process, only sent messages, payload intact,
//!   with the guarantee it was sent with; D2 delivered in the regular configuration of the
//!   ring it was ordered on or the transitional one right after, one ring per message, by
//!   members of that ring, sent by a member; D3 a process delivers its own messages in the
//!   order it sent them and, unless it crashed, all of them; D4 processes that went through
//!   the same transitional configuration delivered the same messages in the regular one
//!   before it and (if both reached the next regular) in the transitional one; D5 one agreed
//!   order (one seq per message, packed messages in one order, every process's deliveries
//!   increase in it), no skip in a regular configuration, in a transitional one only of
//!   senders outside it; D6 per sender incarnation, increasing numbers and no skip of a
//!   message ordered on the same ring as a later one; D7 nothing delivered before a
//!   transitional configuration at one process and after it at another; D8 a safe message
//!   delivered in regular r is delivered by every member of the deliverer's next transitional
//!   configuration that went on from it (or, without one, by every member of r still there at
//!   the end, unless it crashed), and one delivered in a transitional configuration by every
//!   process that went through it to the next regular; D9 at the end every live process is in
//!   one regular configuration whose members are exactly the live nodes, and each delivered
//!   every message ordered in it.
//!
//! The S-properties of the oracle are the simulator's (they need the network's state) and are
//! not checked here.
//!
//! Figures ([`Report::stats`]): messages sent, deliveries, messages delivered by someone, and
//! *lost*: for a message sent by a staying process s (one that did not crash and is not an
//! outsider) and ordered on ring r, every other staying process q that installed r and
//! "stayed with s" (q's next transitional configuration after r keeps s, or r was q's last
//! ring) must deliver it (from q's cutoff on); each message some such q misses counts once,
//! and a message s sent that nobody delivered counts once too. A run is clean
//! ([`Report::ok`]) with no violation and nothing lost.
//!
//! Input: a malformed line (not JSON, or an event without a field the checker reads, or with
//! a field of the wrong type) is a [`TraceError`] naming the file, line and field, never a
//! panic. The one exception is the last line of a file when it has no final newline: a crash
//! may cut it, so it is dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::oracle::Property;

/// A ring id as the worker writes it: `[rep, seq]`.
pub type Ring = (u64, u64);
/// A message: `(node, inc, k)`.
pub type MsgId = (u64, u64, u64);
/// A process: `(node, inc)`.
pub type Pid = (u64, u64);
/// A transitional configuration: (previous regular ring, next ring).
type TransKey = (Ring, Ring);
/// A regular configuration: its ring and members.
type Regular = (Ring, Vec<u64>);
/// Per process name, the regular configuration it ended in.
type Finals = Vec<(String, Option<Regular>)>;
/// Per (ring, seq), each process's messages at that seq in delivery order.
type PacketLists = BTreeMap<(Ring, u64), Vec<(usize, Vec<MsgId>)>>;

/// Rings order by seq, then representative.
fn ring_order(r: Ring) -> (u64, u64) {
    (r.1, r.0)
}

fn fr(r: Ring) -> String {
    format!("({}, {})", r.0, r.1)
}

fn fm(m: MsgId) -> String {
    format!("({}, {}, {})", m.0, m.1, m.2)
}

fn fl<T: fmt::Debug>(v: &[T]) -> String {
    format!("{v:?}")
}

/// One broken property: which, the process it is about (when there is one), and the detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceViolation {
    pub property: Property,
    pub process: Option<String>,
    pub detail: String,
}

impl fmt::Display for TraceViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.property.code())?;
        if let Some(p) = &self.process {
            write!(f, " [{p}]")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// A trace that cannot be read: the file, the 1-based line, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceError {
    pub file: String,
    pub line: usize,
    pub what: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.what)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.what)
        }
    }
}

impl std::error::Error for TraceError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Regular,
    Transitional,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Regular => "regular",
            Kind::Transitional => "transitional",
        }
    }
}

/// One event of a trace, with the fields the checker reads.
#[derive(Clone, Debug)]
enum Ev {
    Start {
        node: u64,
        inc: u64,
        handle: u64,
    },
    Group {
        joined: Vec<(u64, u64)>,
    },
    Send {
        k: u64,
        g: String,
    },
    Config(ConfigEv),
    Deliver {
        id: Option<MsgId>,
        sender: u64,
        ring: Ring,
        seq: u64,
        g: String,
        ok: bool,
    },
    End,
    Other,
}

#[derive(Clone, Debug)]
struct ConfigEv {
    kind: Kind,
    ring: Ring,
    members: Vec<u64>,
    left: Vec<u64>,
    joined: Vec<u64>,
}

/// One trace: its events (with their times), named for errors.
#[derive(Clone, Debug)]
pub struct Trace {
    name: String,
    events: Vec<(f64, Ev)>,
}

fn field<'a>(o: &'a Map<String, Value>, k: &str) -> Result<&'a Value, String> {
    o.get(k).ok_or_else(|| format!("missing field \"{k}\""))
}

fn as_u64(v: &Value, k: &str) -> Result<u64, String> {
    v.as_u64()
        .ok_or_else(|| format!("field \"{k}\": expected a non-negative integer, got {v}"))
}

fn get_u64(o: &Map<String, Value>, k: &str) -> Result<u64, String> {
    as_u64(field(o, k)?, k)
}

fn get_u64_list(o: &Map<String, Value>, k: &str) -> Result<Vec<u64>, String> {
    let v = field(o, k)?;
    let a = v
        .as_array()
        .ok_or_else(|| format!("field \"{k}\": expected a list of integers, got {v}"))?;
    a.iter().map(|x| as_u64(x, k)).collect()
}

fn get_ring(o: &Map<String, Value>, k: &str) -> Result<Ring, String> {
    let v = get_u64_list(o, k)?;
    match v[..] {
        [rep, seq] => Ok((rep, seq)),
        _ => Err(format!("field \"{k}\": expected [rep, seq], got {v:?}")),
    }
}

fn get_g(o: &Map<String, Value>) -> Result<String, String> {
    match o.get("g") {
        None => Ok("agreed".into()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(format!("field \"g\": expected a string, got {v}")),
    }
}

fn get_mid(v: &Value, k: &str) -> Result<MsgId, String> {
    let a = v
        .as_array()
        .ok_or_else(|| format!("field \"{k}\": expected [node, inc, k], got {v}"))?;
    let n: Vec<u64> = a.iter().map(|x| as_u64(x, k)).collect::<Result<_, _>>()?;
    match n[..] {
        [a, b, c] => Ok((a, b, c)),
        _ => Err(format!("field \"{k}\": expected [node, inc, k], got {v}")),
    }
}

fn parse_event(o: &Map<String, Value>) -> Result<(f64, Ev), String> {
    let t = field(o, "t")?
        .as_f64()
        .ok_or_else(|| "field \"t\": expected a number".to_string())?;
    let ev = match o.get("ev") {
        Some(Value::String(s)) => s.as_str(),
        Some(v) => return Err(format!("field \"ev\": expected a string, got {v}")),
        None => return Err("missing field \"ev\"".into()),
    };
    let e = match ev {
        "start" => Ev::Start {
            node: get_u64(o, "node")?,
            inc: get_u64(o, "inc")?,
            handle: match o.get("handle") {
                None => 0,
                Some(v) => as_u64(v, "handle")?,
            },
        },
        "group" => {
            let mut joined = Vec::new();
            if let Some(v) = o.get("joined") {
                let a = v
                    .as_array()
                    .ok_or_else(|| format!("field \"joined\": expected a list, got {v}"))?;
                for x in a {
                    match x
                        .as_array()
                        .map(|p| p.iter().map(Value::as_u64).collect::<Vec<_>>())
                    {
                        Some(p) if p.len() == 2 && p.iter().all(Option::is_some) => {
                            joined.push((p[0].unwrap_or(0), p[1].unwrap_or(0)))
                        }
                        _ => {
                            return Err(format!(
                                "field \"joined\": expected [node, handle] pairs, got {x}"
                            ))
                        }
                    }
                }
            }
            Ev::Group { joined }
        }
        "send" => Ev::Send {
            k: get_mid(field(o, "id")?, "id")?.2,
            g: get_g(o)?,
        },
        "config" => {
            let kind = match field(o, "kind")? {
                Value::String(s) if s == "regular" => Kind::Regular,
                Value::String(s) if s == "transitional" => Kind::Transitional,
                v => {
                    return Err(format!(
                        "field \"kind\": expected \"regular\" or \"transitional\", got {v}"
                    ))
                }
            };
            Ev::Config(ConfigEv {
                kind,
                ring: get_ring(o, "ring")?,
                members: get_u64_list(o, "members")?,
                left: get_u64_list(o, "left")?,
                joined: get_u64_list(o, "joined")?,
            })
        }
        "deliver" => Ev::Deliver {
            id: match o.get("id") {
                None | Some(Value::Null) => None,
                Some(v) => Some(get_mid(v, "id")?),
            },
            sender: get_u64(o, "sender")?,
            ring: get_ring(o, "ring")?,
            seq: get_u64(o, "seq")?,
            g: get_g(o)?,
            ok: match o.get("ok") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(v) => return Err(format!("field \"ok\": expected a boolean, got {v}")),
            },
        },
        "end" => Ev::End,
        _ => Ev::Other,
    };
    Ok((t, e))
}

impl Trace {
    /// Parses the text of one trace file. `name` is used in errors and nowhere else.
    pub fn parse(name: &str, text: &str) -> Result<Trace, TraceError> {
        let mut events = Vec::new();
        let lines: Vec<&str> = text.split('\n').collect();
        let n = lines.len();
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let err = |what: String| TraceError {
                file: name.to_string(),
                line: i + 1,
                what,
            };
            // the last line has no newline after it: a crash may have cut it
            let cut_ok = i + 1 == n;
            let v: Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(_) if cut_ok => continue,
                Err(e) => return Err(err(format!("not JSON: {e}"))),
            };
            let o = match v.as_object() {
                Some(o) => o,
                None => return Err(err(format!("expected a JSON object, got {v}"))),
            };
            events.push(parse_event(o).map_err(err)?);
        }
        if !events.is_empty() && !events.iter().any(|(_, e)| matches!(e, Ev::Start { .. })) {
            return Err(TraceError {
                file: name.to_string(),
                line: 0,
                what: "no \"start\" line".into(),
            });
        }
        Ok(Trace {
            name: name.to_string(),
            events,
        })
    }

    /// The name it was parsed under (its path when loaded).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads and parses one trace file.
    pub fn load(path: &Path) -> Result<Trace, TraceError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TraceError {
            file: name.clone(),
            line: 0,
            what: format!("cannot read: {e}"),
        })?;
        Trace::parse(&name, &text)
    }
}

/// The trace files named: files as given, directories as their `*.jsonl` files in name order.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, TraceError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|e| TraceError {
                file: p.display().to_string(),
                line: 0,
                what: format!("cannot read directory: {e}"),
            })?;
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "jsonl") && f.is_file())
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(TraceError {
                    file: p.display().to_string(),
                    line: 0,
                    what: "no *.jsonl trace in this directory".into(),
                });
            }
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// A fault injected by the harness: when (`t`, host clock) and what (every other field,
/// copied to the report).
#[derive(Clone, Debug, Default)]
pub struct Fault {
    pub t: f64,
    pub detail: Map<String, Value>,
}

impl Fault {
    /// Reads a JSON list of objects, each with a numeric `t`.
    pub fn parse_list(name: &str, text: &str) -> Result<Vec<Fault>, TraceError> {
        let err = |what: String| TraceError {
            file: name.to_string(),
            line: 0,
            what,
        };
        let v: Value = serde_json::from_str(text).map_err(|e| err(format!("not JSON: {e}")))?;
        let a = v
            .as_array()
            .ok_or_else(|| err("expected a JSON list of faults".into()))?;
        a.iter()
            .enumerate()
            .map(|(i, f)| {
                let o = f
                    .as_object()
                    .ok_or_else(|| err(format!("fault {i}: expected an object, got {f}")))?;
                let t = o
                    .get("t")
                    .and_then(Value::as_f64)
                    .ok_or_else(|| err(format!("fault {i}: missing numeric field \"t\"")))?;
                let mut detail = o.clone();
                detail.remove("t");
                Ok(Fault { t, detail })
            })
            .collect()
    }
}

/// What the check is told besides the traces.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Nodes that are not meant to be part of the ring (a host with a wrong key): not owed
    /// anything, not counted as live at the end.
    pub outsiders: Vec<u64>,
    pub faults: Vec<Fault>,
    pub token_ms: u64,
    pub consensus_ms: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            outsiders: Vec::new(),
            faults: Vec::new(),
            token_ms: 1000,
            consensus_ms: 1200,
        }
    }
}

/// The outcome: every violation, the figures, and per fault the time to the next regular
/// configuration.
#[derive(Clone, Debug)]
pub struct Report {
    pub violations: Vec<TraceViolation>,
    pub stats: Value,
    pub fault_times: Vec<Value>,
}

fn fmt_opt_s(v: &Value) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.3} s"),
        None => "none".into(),
    }
}

fn py(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        v => v.to_string(),
    }
}

impl Report {
    /// Lost messages of staying processes.
    pub fn lost(&self) -> u64 {
        self.stats["lost"].as_u64().unwrap_or(0)
    }

    /// No violation and nothing lost.
    pub fn ok(&self) -> bool {
        self.violations.is_empty() && self.lost() == 0
    }

    /// Violations per property code, in checklist order.
    pub fn by_property(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for v in &self.violations {
            *out.entry(v.property.code()).or_insert(0) += 1;
        }
        out
    }

    /// A few lines for a human: the figures, the fault times, the first violations.
    pub fn summary(&self) -> String {
        let s = &self.stats;
        let bp: Vec<String> = self
            .by_property()
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let mut lines = vec![format!(
            "processes {} (crashed {}, outsiders {}); messages sent {}, deliveries {}, \
             messages delivered {}, lost {}; latency p50/p99/max {}/{}/{} s; violations {} {{{}}}",
            s["processes"],
            s["crashed"],
            s["outsiders"],
            s["sent"],
            s["deliveries"],
            s["delivered_messages"],
            s["lost"],
            py(&s["latency_p50_s"]),
            py(&s["latency_p99_s"]),
            py(&s["latency_max_s"]),
            self.violations.len(),
            bp.join(", ")
        )];
        for f in &self.fault_times {
            lines.push(format!(
                "  fault {} at +{:.1} s -> first new regular {}, all {} (token+consensus {:.1} s)",
                f["kind"]
                    .as_str()
                    .map_or_else(|| py(&f["kind"]), str::to_string),
                f["at"].as_f64().unwrap_or(0.0),
                fmt_opt_s(&f["first_regular_s"]),
                fmt_opt_s(&f["all_regular_s"]),
                f["bound_s"].as_f64().unwrap_or(0.0),
            ));
        }
        for v in self.violations.iter().take(20) {
            lines.push(format!("  {v}"));
        }
        if self.violations.len() > 20 {
            lines.push(format!("  ... {} more", self.violations.len() - 20));
        }
        if let Some(ex) = s["lost_examples"].as_array() {
            for d in ex.iter().take(10) {
                lines.push(format!("  lost: {}", d.as_str().unwrap_or("")));
            }
        }
        lines.join("\n")
    }

    /// The report as JSON: violations (property, process, detail), counts per property, the
    /// figures, the fault times, `ok` and the summary text.
    pub fn to_json(&self) -> Value {
        let by: Map<String, Value> = self
            .by_property()
            .into_iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({
            "ok": self.ok(),
            "violations": self.violations.iter().map(|v| json!({
                "property": v.property.code(),
                "process": v.process,
                "detail": v.detail,
            })).collect::<Vec<_>>(),
            "by_property": by,
            "stats": self.stats,
            "fault_times": self.fault_times,
            "summary": self.summary(),
        })
    }
}

/// Reads every trace file (directories expand to their `*.jsonl`) and checks them together.
pub fn check_files(paths: &[PathBuf], opts: &CheckOptions) -> Result<Report, TraceError> {
    let files = expand_paths(paths)?;
    let traces = files
        .iter()
        .map(|f| Trace::load(f))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(check(&traces, opts))
}

// ------------------------------------------------------------------------------ the checker

const INF: f64 = f64::INFINITY;

#[derive(Clone, Debug)]
struct Config {
    kind: Kind,
    /// regular: its ring; transitional: the next ring
    ring: Ring,
    members: Vec<u64>,
    left: Vec<u64>,
    joined: Vec<u64>,
    t: f64,
    idx: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Unknown,
    /// In the regular configuration of its ring.
    Regular,
    /// In the transitional configuration after it.
    Transitional(TransKey),
}

#[derive(Clone, Debug)]
struct Deliv {
    proc: usize,
    id: Option<MsgId>,
    ring: Ring,
    seq: u64,
    g: String,
    t: f64,
    idx: usize,
    place: Place,
}

#[derive(Debug)]
struct Proc {
    node: u64,
    inc: u64,
    crashed: bool,
    outsider: bool,
    handle: u64,
    start_t: f64,
    end_t: Option<f64>,
    events: Vec<(f64, Ev)>,
    configs: Vec<Config>,
    deliveries: Vec<usize>,
    /// k -> time of the send line, in send-line order
    sent: Vec<(u64, f64, String)>,
    join_idx: Option<usize>,
    in_regular: HashMap<Ring, Vec<MsgId>>,
    in_trans: HashMap<Ring, Vec<MsgId>>,
    trans_after: HashMap<Ring, usize>,
    regular_after: HashMap<Ring, Ring>,
    cutoff: HashMap<Ring, f64>,
}

impl Proc {
    fn pid(&self) -> Pid {
        (self.node, self.inc)
    }

    fn name(&self) -> String {
        format!("n{}#{}", self.node, self.inc)
    }

    fn cut(&self, r: Ring) -> f64 {
        self.cutoff.get(&r).copied().unwrap_or(INF)
    }

    fn trans(&self, r: Ring) -> Option<&Config> {
        self.trans_after.get(&r).map(|&i| &self.configs[i])
    }

    fn regular_rings(&self) -> Vec<Ring> {
        self.configs
            .iter()
            .filter(|c| c.kind == Kind::Regular)
            .map(|c| c.ring)
            .collect()
    }
}

struct Checker {
    v: Vec<TraceViolation>,
    procs: Vec<Proc>,
    by_pid: HashMap<Pid, usize>,
    /// node -> its processes, by incarnation
    node_procs: HashMap<u64, Vec<usize>>,
    stop_t: f64,
    ring_members: HashMap<Ring, (Vec<u64>, usize)>,
    /// rings in first-install order (for a deterministic report)
    ring_list: Vec<Ring>,
    ring_installers: HashMap<Ring, Vec<usize>>,
    ring_first_t: HashMap<Ring, f64>,
    trans: HashMap<TransKey, (Vec<u64>, usize)>,
    trans_list: Vec<TransKey>,
    trans_installers: HashMap<TransKey, Vec<usize>>,
    /// message -> (sending process, send time, guarantee), in send-line order
    sent: HashMap<MsgId, (usize, f64, String)>,
    sent_list: Vec<MsgId>,
    dl: Vec<Deliv>,
    deliveries: HashMap<MsgId, Vec<usize>>,
    msg_list: Vec<MsgId>,
    ordered: HashMap<MsgId, (Ring, u64)>,
    packets: HashMap<Ring, BTreeMap<u64, Vec<MsgId>>>,
}

/// Checks the traces (one per process) and returns every violation and the figures.
pub fn check(traces: &[Trace], opts: &CheckOptions) -> Report {
    let mut c = Checker::new(traces, &opts.outsiders);
    c.run();
    let stats = c.d9_and_lost();
    let fault_times = c.fault_times(opts);
    Report {
        violations: c.v,
        stats,
        fault_times,
    }
}

impl Checker {
    fn new(traces: &[Trace], outsiders: &[u64]) -> Checker {
        let mut procs = Vec::new();
        for tr in traces {
            let Some((start_t, node, inc, handle)) = tr.events.iter().find_map(|(t, e)| match e {
                Ev::Start { node, inc, handle } => Some((*t, *node, *inc, *handle)),
                _ => None,
            }) else {
                continue;
            };
            let end_t = tr.events.iter().find_map(|(t, e)| match e {
                Ev::End => Some(*t),
                _ => None,
            });
            procs.push(Proc {
                node,
                inc,
                crashed: end_t.is_none(),
                outsider: outsiders.contains(&node),
                handle,
                start_t,
                end_t,
                events: tr.events.clone(),
                configs: Vec::new(),
                deliveries: Vec::new(),
                sent: Vec::new(),
                join_idx: None,
                in_regular: HashMap::new(),
                in_trans: HashMap::new(),
                trans_after: HashMap::new(),
                regular_after: HashMap::new(),
                cutoff: HashMap::new(),
            });
        }
        let by_pid = procs
            .iter()
            .enumerate()
            .map(|(i, p)| (p.pid(), i))
            .collect();
        let mut order: Vec<usize> = (0..procs.len()).collect();
        order.sort_by_key(|&i| procs[i].inc);
        let mut node_procs: HashMap<u64, Vec<usize>> = HashMap::new();
        for i in order {
            node_procs.entry(procs[i].node).or_default().push(i);
        }
        let stop_t = procs
            .iter()
            .filter_map(|p| p.end_t)
            .fold(INF, |a: f64, b| a.min(b));
        Checker {
            v: Vec::new(),
            procs,
            by_pid,
            node_procs,
            stop_t,
            ring_members: HashMap::new(),
            ring_list: Vec::new(),
            ring_installers: HashMap::new(),
            ring_first_t: HashMap::new(),
            trans: HashMap::new(),
            trans_list: Vec::new(),
            trans_installers: HashMap::new(),
            sent: HashMap::new(),
            sent_list: Vec::new(),
            dl: Vec::new(),
            deliveries: HashMap::new(),
            msg_list: Vec::new(),
            ordered: HashMap::new(),
            packets: HashMap::new(),
        }
    }

    fn bad(&mut self, property: Property, process: Option<String>, detail: String) {
        self.v.push(TraceViolation {
            property,
            process,
            detail,
        });
    }

    fn name(&self, p: usize) -> String {
        self.procs[p].name()
    }

    // -------------------------------------------------------------------- per process

    fn walk(&mut self, pi: usize) {
        let node = self.procs[pi].node;
        let inc = self.procs[pi].inc;
        let mut floor: Option<u64> = self.node_procs[&node]
            .iter()
            .filter(|&&q| self.procs[q].inc < inc)
            .flat_map(|&q| self.procs[q].configs.iter())
            .filter(|c| c.kind == Kind::Regular)
            .map(|c| c.ring.1)
            .max();
        let mut cur: Option<usize> = None; // index into configs
        let mut last_regular: Option<usize> = None;
        let events = std::mem::take(&mut self.procs[pi].events);
        for (i, (t, e)) in events.iter().enumerate() {
            match e {
                Ev::Group { joined } => {
                    let p = &mut self.procs[pi];
                    if p.join_idx.is_none() && joined.contains(&(p.node, p.handle)) {
                        p.join_idx = Some(i);
                    }
                }
                Ev::Send { k, g } => {
                    let p = &mut self.procs[pi];
                    if let Some(x) = p.sent.iter_mut().find(|x| x.0 == *k) {
                        *x = (*k, *t, g.clone());
                    } else {
                        p.sent.push((*k, *t, g.clone()));
                    }
                }
                Ev::Config(ce) => {
                    let c = Config {
                        kind: ce.kind,
                        ring: ce.ring,
                        members: ce.members.clone(),
                        left: ce.left.clone(),
                        joined: ce.joined.clone(),
                        t: *t,
                        idx: i,
                    };
                    self.on_config(pi, &c, cur, last_regular, floor);
                    let p = &mut self.procs[pi];
                    let ci = p.configs.len();
                    if c.kind == Kind::Transitional {
                        if let Some(lr) = last_regular {
                            let r = p.configs[lr].ring;
                            p.trans_after.insert(r, ci);
                        }
                    } else {
                        if let Some(lr) = last_regular {
                            let r = p.configs[lr].ring;
                            p.regular_after.insert(r, c.ring);
                        }
                        last_regular = Some(ci);
                        p.in_regular.entry(c.ring).or_default();
                        floor = Some(c.ring.1);
                    }
                    p.configs.push(c);
                    cur = Some(ci);
                }
                Ev::Deliver {
                    id,
                    sender,
                    ring,
                    seq,
                    g,
                    ok,
                } => {
                    let d = Deliv {
                        proc: pi,
                        id: *id,
                        ring: *ring,
                        seq: *seq,
                        g: g.clone(),
                        t: *t,
                        idx: i,
                        place: Place::Unknown,
                    };
                    self.on_deliver(pi, d, *sender, *ok, cur, last_regular);
                }
                _ => {}
            }
        }
        self.procs[pi].events = events;
        // cutoffs: complete on rings installed after the join; on the join's ring, from the
        // first message delivered after the join
        let p = &self.procs[pi];
        let mut cutoff = HashMap::new();
        for c in p.configs.iter().filter(|c| c.kind == Kind::Regular) {
            let v = match p.join_idx {
                Some(j) if j < c.idx => -INF,
                _ => p
                    .deliveries
                    .iter()
                    .map(|&d| &self.dl[d])
                    .filter(|d| d.ring == c.ring && p.join_idx.is_some_and(|j| d.idx > j))
                    .map(|d| d.seq as f64)
                    .fold(INF, f64::min),
            };
            cutoff.insert(c.ring, v);
        }
        self.procs[pi].cutoff = cutoff;
    }

    fn on_config(
        &mut self,
        pi: usize,
        c: &Config,
        cur: Option<usize>,
        last_reg: Option<usize>,
        floor: Option<u64>,
    ) {
        let name = Some(self.name(pi));
        let p = &self.procs[pi];
        let node = p.node;
        let cur = cur.map(|i| p.configs[i].clone());
        let last_reg = last_reg.map(|i| p.configs[i].clone());
        let kind = c.kind.name();
        let ring = fr(c.ring);
        let members = fl(&c.members);
        let sorted: Vec<u64> = c
            .members
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if c.members != sorted {
            self.bad(
                Property::C2UniqueIds,
                name.clone(),
                format!(
                    "installed {kind} {ring} with members {members}, not a strictly ascending set"
                ),
            );
        }
        if !c.members.contains(&node) {
            self.bad(
                Property::C1SelfInclusion,
                name.clone(),
                format!("installed {kind} {ring} with members {members}, which lack itself"),
            );
        }
        if c.kind == Kind::Transitional {
            let frm = match (&cur, &last_reg) {
                (Some(cu), Some(lr)) if cu.kind == Kind::Regular => lr.clone(),
                _ => {
                    let what = if cur.is_none() {
                        "as its first configuration"
                    } else {
                        "after a transitional"
                    };
                    self.bad(
                        Property::C4Alternation,
                        name,
                        format!("installed transitional ->{ring} {what}"),
                    );
                    return;
                }
            };
            let fring = fr(frm.ring);
            if ring_order(c.ring) <= ring_order(frm.ring) {
                self.bad(
                    Property::C3MonotoneIds,
                    name.clone(),
                    format!(
                        "installed transitional {fring}->{ring}: the next ring does not exceed \
                         the previous one"
                    ),
                );
            }
            let extra: Vec<u64> = c
                .members
                .iter()
                .copied()
                .filter(|q| !frm.members.contains(q))
                .collect();
            if !extra.is_empty() {
                self.bad(
                    Property::C4Alternation,
                    name.clone(),
                    format!(
                        "installed transitional {fring}->{ring} {members} with {}, not members \
                         of {}",
                        fl(&extra),
                        fl(&frm.members)
                    ),
                );
            }
            let left: Vec<u64> = frm
                .members
                .iter()
                .copied()
                .filter(|q| !c.members.contains(q))
                .collect();
            let mut got_left = c.left.clone();
            got_left.sort_unstable();
            if got_left != left || !c.joined.is_empty() {
                self.bad(
                    Property::C4Alternation,
                    name.clone(),
                    format!(
                        "installed transitional {fring}->{ring} {members} with left {} joined \
                         {}; expected left {} joined []",
                        fl(&c.left),
                        fl(&c.joined),
                        fl(&left)
                    ),
                );
            }
            let key = (frm.ring, c.ring);
            if let Some((m, other)) = self.trans.get(&key) {
                if *m != c.members {
                    let detail = format!(
                        "{} and {} both went from {fring} to {ring} through different \
                         transitional configurations: {members} and {}",
                        self.name(pi),
                        self.name(*other),
                        fl(m)
                    );
                    self.bad(Property::C6TransitionalConsistency, name, detail);
                }
            } else {
                self.trans.insert(key, (c.members.clone(), pi));
                self.trans_list.push(key);
            }
            self.trans_installers.entry(key).or_default().push(pi);
        } else {
            if let Some(cu) = &cur {
                if cu.kind == Kind::Regular {
                    self.bad(
                        Property::C4Alternation,
                        name.clone(),
                        format!(
                            "installed regular {ring} right after regular {}, without a \
                             transitional configuration",
                            fr(cu.ring)
                        ),
                    );
                } else {
                    if c.ring != cu.ring {
                        self.bad(
                            Property::C4Alternation,
                            name.clone(),
                            format!(
                                "installed regular {ring} after transitional ->{0}, which \
                                 announced ring {0}",
                                fr(cu.ring)
                            ),
                        );
                    }
                    let missing: Vec<u64> = cu
                        .members
                        .iter()
                        .copied()
                        .filter(|q| !c.members.contains(q))
                        .collect();
                    if !missing.is_empty() {
                        self.bad(
                            Property::C4Alternation,
                            name.clone(),
                            format!(
                                "installed regular {ring} {members} without {}, members of \
                                 the transitional configuration before it",
                                fl(&missing)
                            ),
                        );
                    }
                    let joined: Vec<u64> = c
                        .members
                        .iter()
                        .copied()
                        .filter(|q| !cu.members.contains(q))
                        .collect();
                    let mut got = c.joined.clone();
                    got.sort_unstable();
                    if got != joined {
                        self.bad(
                            Property::C4Alternation,
                            name.clone(),
                            format!(
                                "installed regular {ring} {members} with joined {}; after \
                                 transitional {} expected {}",
                                fl(&c.joined),
                                fl(&cu.members),
                                fl(&joined)
                            ),
                        );
                    }
                }
            }
            if !c.left.is_empty() {
                self.bad(
                    Property::C4Alternation,
                    name.clone(),
                    format!(
                        "installed regular {ring} with left {}: only transitional \
                         configurations report departures",
                        fl(&c.left)
                    ),
                );
            }
            if let Some(f) = floor {
                if c.ring.1 <= f {
                    self.bad(
                        Property::C3MonotoneIds,
                        name.clone(),
                        format!(
                            "installed regular {ring}, whose seq does not exceed {f} (its \
                             previous regular ring or an earlier incarnation's)"
                        ),
                    );
                }
            }
            if !c.members.contains(&c.ring.0) {
                self.bad(
                    Property::C2UniqueIds,
                    name.clone(),
                    format!(
                        "installed regular {ring} {members}: its representative is not a member"
                    ),
                );
            }
            if let Some((m, first)) = self.ring_members.get(&c.ring) {
                if *m != c.members {
                    let detail = format!(
                        "installed regular {ring} with members {members} but {} installed it \
                         with {}",
                        self.name(*first),
                        fl(m)
                    );
                    self.bad(Property::C2UniqueIds, name, detail);
                }
            } else {
                self.ring_members.insert(c.ring, (c.members.clone(), pi));
                self.ring_list.push(c.ring);
            }
            self.ring_installers.entry(c.ring).or_default().push(pi);
            let t = self.ring_first_t.entry(c.ring).or_insert(INF);
            *t = t.min(c.t);
        }
    }

    fn on_deliver(
        &mut self,
        pi: usize,
        mut d: Deliv,
        sender: u64,
        ok: bool,
        cur: Option<usize>,
        last_reg: Option<usize>,
    ) {
        let name = Some(self.name(pi));
        let id = d.id.map_or_else(|| "None".to_string(), fm);
        if d.id.is_none() || !ok {
            self.bad(
                Property::D1Integrity,
                name.clone(),
                format!(
                    "delivered a payload that is not an intact message of the run (id {id}, \
                     sender n{sender}, ring {} seq {})",
                    fr(d.ring),
                    d.seq
                ),
            );
        }
        let p = &self.procs[pi];
        let (cu, lr) = match (cur, last_reg) {
            (Some(c), Some(l)) => (p.configs[c].clone(), p.configs[l].ring),
            _ => {
                self.bad(
                    Property::D2SendingConfiguration,
                    name,
                    format!("delivered {id} before any configuration"),
                );
                self.push_delivery(pi, d);
                return;
            }
        };
        if cu.kind == Kind::Regular && d.ring == cu.ring {
            d.place = Place::Regular;
        } else if cu.kind == Kind::Transitional && d.ring == lr {
            d.place = Place::Transitional((lr, cu.ring));
        } else {
            self.bad(
                Property::D2SendingConfiguration,
                name,
                format!(
                    "delivered {id} (ordered on {}) in {} {}: not the regular configuration of \
                     its ring nor the transitional one after it",
                    fr(d.ring),
                    cu.kind.name(),
                    fr(cu.ring)
                ),
            );
            self.push_delivery(pi, d);
            return;
        }
        if let Some(m) = d.id {
            let p = &mut self.procs[pi];
            let to = if d.place == Place::Regular {
                &mut p.in_regular
            } else {
                &mut p.in_trans
            };
            to.entry(d.ring).or_default().push(m);
            let di = self.push_delivery(pi, d);
            let e = self.deliveries.entry(m).or_default();
            if e.is_empty() {
                self.msg_list.push(m);
            }
            e.push(di);
        } else {
            self.push_delivery(pi, d);
        }
    }

    fn push_delivery(&mut self, pi: usize, d: Deliv) -> usize {
        let di = self.dl.len();
        self.dl.push(d);
        self.procs[pi].deliveries.push(di);
        di
    }

    // -------------------------------------------------------------------- global

    fn run(&mut self) {
        let mut order: Vec<usize> = (0..self.procs.len()).collect();
        order.sort_by_key(|&i| self.procs[i].inc);
        for pi in order {
            self.walk(pi);
        }
        for (pi, p) in self.procs.iter().enumerate() {
            for (k, t, g) in &p.sent {
                let m = (p.node, p.inc, *k);
                if self.sent.insert(m, (pi, *t, g.clone())).is_none() {
                    self.sent_list.push(m);
                }
            }
        }
        self.d1_d2_d5_order();
        self.c5();
        self.d3();
        self.d4();
        self.d5_gaps();
        self.d6();
        self.d7();
        self.d8();
    }

    fn d1_d2_d5_order(&mut self) {
        for pi in 0..self.procs.len() {
            let name = Some(self.name(pi));
            let mut seen = HashSet::new();
            let mut last: Option<((u64, u64), u64)> = None;
            let mut bad = Vec::new();
            for &di in &self.procs[pi].deliveries {
                let d = &self.dl[di];
                let Some(m) = d.id else { continue };
                if d.place == Place::Unknown {
                    continue;
                }
                if !seen.insert(m) {
                    bad.push((Property::D1Integrity, format!("delivered {} twice", fm(m))));
                    continue;
                }
                let key = (ring_order(d.ring), d.seq);
                if let Some(l) = last {
                    if key < l {
                        bad.push((
                            Property::D5TotalOrder,
                            format!(
                                "delivered {} (ring {} seq {}) after a message at ring/seq \
                                 (({}, {}), {})",
                                fm(m),
                                fr(d.ring),
                                d.seq,
                                l.0 .0,
                                l.0 .1,
                                l.1
                            ),
                        ));
                    }
                }
                last = Some(key);
            }
            for (prop, detail) in bad {
                self.bad(prop, name.clone(), detail);
            }
        }
        for m in self.msg_list.clone() {
            let ds = self.deliveries[&m].clone();
            let first = self.dl[ds[0]].proc;
            match self.sent.get(&m).cloned() {
                None => {
                    // a crashed sender may die between mcast returning and the "send" line
                    let unrecorded_ok = self.by_pid.get(&(m.0, m.1)).is_some_and(|&sp| {
                        let s = &self.procs[sp];
                        s.crashed && m.2 == s.sent.iter().map(|x| x.0).max().unwrap_or(0) + 1
                    });
                    if !unrecorded_ok {
                        let detail = format!(
                            "{} was delivered by {} but never sent",
                            fm(m),
                            self.name(first)
                        );
                        self.bad(Property::D1Integrity, Some(self.name(first)), detail);
                    }
                }
                Some((_, _, g)) => {
                    for &di in &ds {
                        let d = &self.dl[di];
                        if d.g != g {
                            let detail = format!(
                                "{} was sent {g} but {} delivered it {}",
                                fm(m),
                                self.name(d.proc),
                                d.g
                            );
                            self.bad(Property::D1Integrity, Some(self.name(d.proc)), detail);
                        }
                    }
                }
            }
            let rings: BTreeSet<Ring> = ds.iter().map(|&d| self.dl[d].ring).collect();
            if rings.len() > 1 {
                let rs: Vec<String> = rings.iter().map(|&r| fr(r)).collect();
                self.bad(
                    Property::D2SendingConfiguration,
                    None,
                    format!(
                        "{} was delivered on several rings: [{}]",
                        fm(m),
                        rs.join(", ")
                    ),
                );
                continue;
            }
            let r = self.dl[ds[0]].ring;
            let seqs: BTreeSet<u64> = ds.iter().map(|&d| self.dl[d].seq).collect();
            if seqs.len() > 1 {
                self.bad(
                    Property::D5TotalOrder,
                    None,
                    format!(
                        "{} was delivered at several seqs of ring {}: {:?}",
                        fm(m),
                        fr(r),
                        seqs
                    ),
                );
            }
            self.ordered.insert(m, (r, self.dl[ds[0]].seq));
            let members = self
                .ring_members
                .get(&r)
                .map(|x| x.0.clone())
                .unwrap_or_default();
            if !members.contains(&m.0) {
                self.bad(
                    Property::D2SendingConfiguration,
                    None,
                    format!(
                        "{} was ordered on ring {} {}, whose members lack its sender",
                        fm(m),
                        fr(r),
                        fl(&members)
                    ),
                );
            }
        }
        // packets: every process's list for one (ring, seq) is a subsequence of the longest
        let mut lists: PacketLists = BTreeMap::new();
        for (pi, p) in self.procs.iter().enumerate() {
            let mut per: BTreeMap<(Ring, u64), Vec<MsgId>> = BTreeMap::new();
            for &di in &p.deliveries {
                let d = &self.dl[di];
                if let (Some(m), false) = (d.id, d.place == Place::Unknown) {
                    per.entry((d.ring, d.seq)).or_default().push(m);
                }
            }
            for (k, ids) in per {
                lists.entry(k).or_default().push((pi, ids));
            }
        }
        for ((r, s), entries) in lists {
            // the first of the longest, as Python's max()
            let mut best = 0;
            for (i, e) in entries.iter().enumerate() {
                if e.1.len() > entries[best].1.len() {
                    best = i;
                }
            }
            let (canon_p, canon) = entries[best].clone();
            let pos: HashMap<MsgId, usize> =
                canon.iter().enumerate().map(|(i, &m)| (m, i)).collect();
            for (pi, ids) in &entries {
                let idx: Vec<Option<usize>> = ids.iter().map(|m| pos.get(m).copied()).collect();
                if idx.iter().any(Option::is_none) || idx.windows(2).any(|w| w[0] > w[1]) {
                    let detail = format!(
                        "delivered the messages of ring {} seq {s} as [{}] but {} as [{}]",
                        fr(r),
                        ids.iter().map(|&m| fm(m)).collect::<Vec<_>>().join(", "),
                        self.name(canon_p),
                        canon.iter().map(|&m| fm(m)).collect::<Vec<_>>().join(", ")
                    );
                    self.bad(Property::D5TotalOrder, Some(self.name(*pi)), detail);
                }
            }
            self.packets.entry(r).or_default().insert(s, canon);
        }
    }

    /// The seq m was ordered at (infinite when it has no single one: reported already).
    fn seq_of(&self, m: MsgId) -> f64 {
        self.ordered.get(&m).map_or(INF, |o| o.1 as f64)
    }

    fn incarnation_at(&self, node: u64, t: f64) -> Option<usize> {
        self.node_procs
            .get(&node)?
            .iter()
            .copied()
            .rfind(|&q| self.procs[q].start_t <= t)
    }

    fn c5(&mut self) {
        // kept in a transitional configuration -> installed the ring before it
        for key in self.trans_list.clone() {
            let (frm, to) = key;
            let members = self.trans[&key].0.clone();
            let first = self.trans_installers[&key][0];
            for &q in &members {
                let installed = self
                    .ring_installers
                    .get(&frm)
                    .is_some_and(|v| v.iter().any(|&i| self.procs[i].node == q));
                if !installed {
                    self.bad(
                        Property::C5AgreementOnInstalls,
                        Some(self.name(first)),
                        format!(
                            "installed transitional {}->{} {} keeping n{q}, which never \
                             installed {}",
                            fr(frm),
                            fr(to),
                            fl(&members),
                            fr(frm)
                        ),
                    );
                }
            }
        }
        // strict: rings formed before the stop began
        for r in self.ring_list.clone() {
            let first_t = self.ring_first_t[&r];
            if first_t >= self.stop_t {
                continue;
            }
            let members = self.ring_members[&r].0.clone();
            let installers = self.ring_installers[&r].clone();
            for &q in &members {
                if installers.iter().any(|&i| self.procs[i].node == q) {
                    continue;
                }
                match self.incarnation_at(q, first_t) {
                    None => continue,
                    Some(qi) if self.procs[qi].crashed => continue,
                    _ => {}
                }
                let keepers: Vec<String> = installers
                    .iter()
                    .map(|&i| &self.procs[i])
                    .filter(|p| !p.crashed)
                    .filter(|p| p.trans(r).is_none_or(|t| t.members.contains(&q)))
                    .map(Proc::name)
                    .collect();
                if !keepers.is_empty() {
                    self.bad(
                        Property::C5AgreementOnInstalls,
                        Some(format!("n{q}")),
                        format!(
                            "n{q} is a member of regular {} {} and never installed it, yet {:?} \
                             did not exclude it afterwards",
                            fr(r),
                            fl(&members),
                            keepers
                        ),
                    );
                }
            }
        }
    }

    fn d3(&mut self) {
        for pi in 0..self.procs.len() {
            let p = &self.procs[pi];
            let own: Vec<u64> = p
                .deliveries
                .iter()
                .filter_map(|&d| self.dl[d].id)
                .filter(|m| m.0 == p.node && m.1 == p.inc)
                .map(|m| m.2)
                .collect();
            let mut sent: Vec<u64> = p.sent.iter().map(|x| x.0).collect();
            sent.sort_unstable();
            let pos: HashMap<u64, usize> = sent.iter().enumerate().map(|(i, &k)| (k, i)).collect();
            let mut done = HashSet::new();
            let mut need = 0;
            let mut out = Vec::new();
            for &k in &own {
                let Some(&i) = pos.get(&k) else { continue };
                if i > need {
                    let skipped: Vec<u64> = sent[need..i]
                        .iter()
                        .copied()
                        .filter(|x| !done.contains(x))
                        .take(5)
                        .collect();
                    out.push(format!(
                        "delivered its own message {k} before its earlier ones {}",
                        fl(&skipped)
                    ));
                    break;
                }
                done.insert(k);
                while need < sent.len() && done.contains(&sent[need]) {
                    need += 1;
                }
            }
            if !p.crashed {
                let own_set: HashSet<u64> = own.iter().copied().collect();
                let missing: Vec<u64> = sent
                    .iter()
                    .copied()
                    .filter(|k| !own_set.contains(k))
                    .collect();
                if !missing.is_empty() {
                    out.push(format!(
                        "sent {} messages it never delivered (first {}) and did not crash",
                        missing.len(),
                        fl(&missing[..missing.len().min(5)])
                    ));
                }
            }
            let name = Some(p.name());
            for d in out {
                self.bad(Property::D3SelfDelivery, name.clone(), d);
            }
        }
    }

    fn d4(&mut self) {
        for key in self.trans_list.clone() {
            let (frm, to) = key;
            let procs = self.trans_installers[&key].clone();
            if procs.len() < 2 {
                continue;
            }
            let base = procs[0];
            for &pi in &procs[1..] {
                let (b, p) = (&self.procs[base], &self.procs[pi]);
                let cut = b.cut(frm).max(p.cut(frm));
                if cut == INF {
                    continue;
                }
                let set = |v: Option<&Vec<MsgId>>| -> BTreeSet<MsgId> {
                    v.into_iter()
                        .flatten()
                        .copied()
                        .filter(|&m| self.seq_of(m) >= cut)
                        .collect()
                };
                let mut out = Vec::new();
                let a = set(b.in_regular.get(&frm));
                let bb = set(p.in_regular.get(&frm));
                if a != bb {
                    let diff: Vec<String> = a
                        .symmetric_difference(&bb)
                        .take(3)
                        .map(|&m| fm(m))
                        .collect();
                    out.push(format!(
                        "{} and {} both went from regular {} to transitional ->{} but \
                         delivered different messages in {}: [{}] in one only",
                        b.name(),
                        p.name(),
                        fr(frm),
                        fr(to),
                        fr(frm),
                        diff.join(", ")
                    ));
                }
                if b.regular_after.get(&frm) == Some(&to) && p.regular_after.get(&frm) == Some(&to)
                {
                    let a = set(b.in_trans.get(&frm));
                    let bb = set(p.in_trans.get(&frm));
                    if a != bb {
                        let diff: Vec<String> = a
                            .symmetric_difference(&bb)
                            .take(3)
                            .map(|&m| fm(m))
                            .collect();
                        out.push(format!(
                            "{} and {} both went through transitional {}->{} to regular {} but \
                             delivered different messages in it: [{}] in one only",
                            b.name(),
                            p.name(),
                            fr(frm),
                            fr(to),
                            fr(to),
                            diff.join(", ")
                        ));
                    }
                }
                let name = Some(p.name());
                for d in out {
                    self.bad(Property::D4FailureAtomicity, name.clone(), d);
                }
            }
        }
    }

    /// (seq, id) of every message ordered on r, in agreed order.
    fn agreed(&self, r: Ring) -> Vec<(u64, MsgId)> {
        let mut out = Vec::new();
        if let Some(p) = self.packets.get(&r) {
            for (&s, ms) in p {
                for &m in ms {
                    out.push((s, m));
                }
            }
        }
        out
    }

    fn d5_gaps(&mut self) {
        for pi in 0..self.procs.len() {
            let mut out = Vec::new();
            let p = &self.procs[pi];
            for r in p.regular_rings() {
                let order = self.agreed(r);
                if order.is_empty() {
                    continue;
                }
                let rank: HashMap<MsgId, i64> = order
                    .iter()
                    .enumerate()
                    .map(|(n, &(_, m))| (m, n as i64))
                    .collect();
                let empty = Vec::new();
                let reg = p.in_regular.get(&r).unwrap_or(&empty);
                let tr = p.in_trans.get(&r).unwrap_or(&empty);
                let got: HashSet<MsgId> = reg.iter().chain(tr.iter()).copied().collect();
                let cut = p.cut(r);
                if !reg.is_empty() {
                    let hi = reg
                        .iter()
                        .map(|m| *rank.get(m).unwrap_or(&-1))
                        .max()
                        .unwrap_or(-1);
                    for &(s, m) in order.iter().take(hi.max(0) as usize) {
                        if s as f64 >= cut && !got.contains(&m) {
                            out.push(format!(
                                "skipped {} (ring {} seq {s}) but delivered later messages of {} \
                                 in its regular configuration",
                                fm(m),
                                fr(r),
                                fr(r)
                            ));
                            break;
                        }
                    }
                }
                if let (false, Some(t)) = (tr.is_empty(), p.trans(r)) {
                    let hi = tr
                        .iter()
                        .map(|m| *rank.get(m).unwrap_or(&-1))
                        .max()
                        .unwrap_or(-1);
                    for &(s, m) in order.iter().take(hi.max(0) as usize) {
                        if s as f64 >= cut && !got.contains(&m) && t.members.contains(&m.0) {
                            out.push(format!(
                                "skipped {} (ring {} seq {s}) from n{}, a member of its \
                                 transitional configuration {}, and delivered later messages of \
                                 {} in it",
                                fm(m),
                                fr(r),
                                m.0,
                                fl(&t.members),
                                fr(r)
                            ));
                            break;
                        }
                    }
                }
            }
            let name = Some(p.name());
            for d in out {
                self.bad(Property::D5TotalOrder, name.clone(), d);
            }
        }
    }

    fn d6(&mut self) {
        let mut by_sender_ring: HashMap<(u64, u64, Ring), Vec<(u64, u64)>> = HashMap::new();
        for (&m, &(r, s)) in &self.ordered {
            by_sender_ring
                .entry((m.0, m.1, r))
                .or_default()
                .push((m.2, s));
        }
        for v in by_sender_ring.values_mut() {
            v.sort_unstable();
        }
        for pi in 0..self.procs.len() {
            let p = &self.procs[pi];
            let mut out = Vec::new();
            let mut last: HashMap<(u64, u64), u64> = HashMap::new();
            let mut per: BTreeMap<(u64, u64, Ring), BTreeSet<u64>> = BTreeMap::new();
            for &di in &p.deliveries {
                let d = &self.dl[di];
                let Some(m) = d.id else { continue };
                if d.place == Place::Unknown {
                    continue;
                }
                let src = (m.0, m.1);
                if let Some(&l) = last.get(&src) {
                    if m.2 <= l {
                        out.push(format!(
                            "delivered {} after message {l} of the same sender",
                            fm(m)
                        ));
                    }
                }
                let e = last.entry(src).or_insert(0);
                *e = (*e).max(m.2);
                per.entry((m.0, m.1, d.ring)).or_default().insert(m.2);
            }
            for ((n, inc, r), ks) in &per {
                let hi = *ks.iter().next_back().unwrap_or(&0);
                let cut = p.cut(*r);
                for &(k, s) in by_sender_ring.get(&(*n, *inc, *r)).into_iter().flatten() {
                    if k < hi && !ks.contains(&k) && s as f64 >= cut {
                        out.push(format!(
                            "delivered ({n}, {inc}, {hi}) but not the earlier ({n}, {inc}, {k}) \
                             ordered on the same ring {}",
                            fr(*r)
                        ));
                        break;
                    }
                }
            }
            let name = Some(p.name());
            for d in out {
                self.bad(Property::D6Causal, name.clone(), d);
            }
        }
    }

    fn d7(&mut self) {
        for m in self.msg_list.clone() {
            let mut before: BTreeMap<TransKey, usize> = BTreeMap::new();
            let mut after: BTreeMap<TransKey, usize> = BTreeMap::new();
            for &di in &self.deliveries[&m] {
                let d = &self.dl[di];
                let p = &self.procs[d.proc];
                match d.place {
                    Place::Regular => {
                        if let Some(t) = p.trans(d.ring) {
                            before.insert((d.ring, t.ring), d.proc);
                        }
                    }
                    Place::Transitional(k) => {
                        after.insert(k, d.proc);
                    }
                    Place::Unknown => {}
                }
            }
            for (k, b) in &before {
                if let Some(a) = after.get(k) {
                    let detail = format!(
                        "{} was delivered by {} before transitional {}->{} and by {} after it",
                        fm(m),
                        self.name(*b),
                        fr(k.0),
                        fr(k.1),
                        self.name(*a)
                    );
                    self.bad(Property::D7ConfigurationOrder, Some(self.name(*a)), detail);
                }
            }
        }
    }

    fn d8(&mut self) {
        for m in self.msg_list.clone() {
            let ds = self.deliveries[&m].clone();
            if self.dl[ds[0]].g != "safe" {
                continue;
            }
            let r = self.dl[ds[0]].ring;
            let got: HashSet<Pid> = ds
                .iter()
                .map(|&d| self.procs[self.dl[d].proc].pid())
                .collect();
            let got_nodes: HashSet<u64> = got.iter().map(|p| p.0).collect();
            let seq = self.seq_of(m);
            let mut out = Vec::new();
            for &di in &ds {
                let d = &self.dl[di];
                let p = &self.procs[d.proc];
                match d.place {
                    Place::Regular => {
                        let t = p.trans(r);
                        let owed: Vec<u64> = match t {
                            Some(t) => t.members.clone(),
                            None => self
                                .ring_members
                                .get(&r)
                                .map(|x| x.0.clone())
                                .unwrap_or_default(),
                        };
                        for q in owed {
                            if got_nodes.contains(&q) {
                                continue;
                            }
                            for &qi in self.ring_installers.get(&r).into_iter().flatten() {
                                let qp = &self.procs[qi];
                                if qp.node != q || got.contains(&qp.pid()) {
                                    continue;
                                }
                                if qp.crashed && !qp.regular_after.contains_key(&r) {
                                    continue; // failed while still in r
                                }
                                if qp.cut(r) > seq {
                                    continue;
                                }
                                out.push((
                                    qp.name(),
                                    format!(
                                        "{} was delivered safe by {} in regular {} and never by \
                                         {}, which {}",
                                        fm(m),
                                        p.name(),
                                        fr(r),
                                        qp.name(),
                                        if t.is_some() {
                                            "stayed with it"
                                        } else {
                                            "was a member to the end"
                                        }
                                    ),
                                ));
                            }
                        }
                    }
                    Place::Transitional(key) => {
                        for &qi in self.trans_installers.get(&key).into_iter().flatten() {
                            let qp = &self.procs[qi];
                            if got.contains(&qp.pid()) || qp.regular_after.get(&r) != Some(&key.1) {
                                continue;
                            }
                            if qp.cut(r) > seq {
                                continue;
                            }
                            out.push((
                                qp.name(),
                                format!(
                                    "{} was delivered safe by {} in transitional {}->{} and \
                                     never by {}, which went through it",
                                    fm(m),
                                    p.name(),
                                    fr(r),
                                    fr(key.1),
                                    qp.name()
                                ),
                            ));
                        }
                    }
                    Place::Unknown => {}
                }
            }
            for (who, d) in out {
                self.bad(Property::D8Safe, Some(who), d);
            }
        }
    }

    // -------------------------------------------------------------------- end of run

    fn d9_and_lost(&mut self) -> Value {
        let staying: Vec<usize> = (0..self.procs.len())
            .filter(|&i| !self.procs[i].crashed && !self.procs[i].outsider)
            .collect();
        let live_nodes: Vec<u64> = staying
            .iter()
            .map(|&i| self.procs[i].node)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // name -> final (ring, members), in staying order (a later duplicate name wins)
        let mut final_: Finals = Vec::new();
        for &pi in &staying {
            let p = &self.procs[pi];
            let end = p.end_t.unwrap_or(INF);
            let last = p
                .configs
                .iter()
                .rfind(|c| c.kind == Kind::Regular && c.t <= end)
                .map(|c| (c.ring, c.members.clone()));
            let name = p.name();
            if let Some(x) = final_.iter_mut().find(|x| x.0 == name) {
                x.1 = last;
            } else {
                final_.push((name, last));
            }
            if let Some(c) = p.configs.last() {
                if c.kind != Kind::Regular {
                    let detail = format!("ended in transitional ->{}, not settled", fr(c.ring));
                    self.bad(Property::D9Liveness, Some(p.name()), detail);
                }
            }
        }
        let fmt_final = |f: &Finals| -> String {
            let parts: Vec<String> = f
                .iter()
                .map(|(n, v)| match v {
                    Some((r, m)) => format!("'{n}': ({}, {})", fr(*r), fl(m)),
                    None => format!("'{n}': None"),
                })
                .collect();
            format!("{{{}}}", parts.join(", "))
        };
        if !staying.is_empty() {
            let rings: BTreeSet<Option<(Ring, Vec<u64>)>> =
                final_.iter().map(|x| x.1.clone()).collect();
            if rings.contains(&None) || rings.len() != 1 {
                let detail = format!(
                    "live processes ended on different regular configurations: {}",
                    fmt_final(&final_)
                );
                self.bad(Property::D9Liveness, None, detail);
            } else if let Some(Some((r, members))) = rings.into_iter().next() {
                if members != live_nodes {
                    self.bad(
                        Property::D9Liveness,
                        None,
                        format!(
                            "final ring {} has members {} but the live nodes are {}",
                            fr(r),
                            fl(&members),
                            fl(&live_nodes)
                        ),
                    );
                }
                let delivered: Vec<HashSet<MsgId>> = staying
                    .iter()
                    .map(|&i| {
                        self.procs[i]
                            .in_regular
                            .get(&r)
                            .into_iter()
                            .flatten()
                            .copied()
                            .collect()
                    })
                    .collect();
                let cuts: Vec<f64> = staying.iter().map(|&i| self.procs[i].cut(r)).collect();
                let mut out = Vec::new();
                for (s, m) in self.agreed(r) {
                    for (j, &pi) in staying.iter().enumerate() {
                        if !delivered[j].contains(&m) && s as f64 >= cuts[j] {
                            out.push((
                                self.name(pi),
                                format!(
                                    "{} (final ring {} seq {s}) was never delivered by {}",
                                    fm(m),
                                    fr(r),
                                    self.name(pi)
                                ),
                            ));
                            break;
                        }
                    }
                }
                for (who, d) in out {
                    self.bad(Property::D9Liveness, Some(who), d);
                }
            }
        }
        // lost messages of staying senders
        let staying_pids: HashSet<Pid> = staying.iter().map(|&i| self.procs[i].pid()).collect();
        let mut lost: HashSet<MsgId> = HashSet::new();
        let mut examples: Vec<String> = Vec::new();
        for &m in &self.sent_list {
            let (sp, _, _) = self.sent[&m];
            let s_proc = &self.procs[sp];
            if !staying_pids.contains(&s_proc.pid()) {
                continue;
            }
            let Some(&(r, s)) = self.ordered.get(&m) else {
                lost.insert(m);
                examples.push(format!(
                    "{} sent by {} was never delivered by anyone",
                    fm(m),
                    s_proc.name()
                ));
                continue;
            };
            let got: HashSet<Pid> = self
                .deliveries
                .get(&m)
                .into_iter()
                .flatten()
                .map(|&d| self.procs[self.dl[d].proc].pid())
                .collect();
            for &qi in &staying {
                let q = &self.procs[qi];
                if q.pid() == s_proc.pid()
                    || !q.in_regular.contains_key(&r)
                    || got.contains(&q.pid())
                {
                    continue;
                }
                if let Some(t) = q.trans(r) {
                    if !t.members.contains(&s_proc.node) {
                        continue;
                    }
                }
                if (s as f64) < q.cut(r) {
                    continue;
                }
                lost.insert(m);
                examples.push(format!(
                    "{} (ring {} seq {s}) sent by {} never delivered by {}, which stayed with it",
                    fm(m),
                    fr(r),
                    s_proc.name(),
                    q.name()
                ));
                break;
            }
        }
        // send -> delivery latency (same host clock): a stalled ring shows here even when no
        // property breaks
        let mut lat: Vec<f64> = Vec::new();
        for m in &self.sent_list {
            let t0 = self.sent[m].1;
            for &d in self.deliveries.get(m).into_iter().flatten() {
                lat.push(self.dl[d].t - t0);
            }
        }
        lat.sort_by(f64::total_cmp);
        let round3 = |x: f64| (x * 1000.0).round() / 1000.0;
        let pct = |q: f64| -> Value {
            if lat.is_empty() {
                Value::Null
            } else {
                let i = ((q * lat.len() as f64) as usize).min(lat.len() - 1);
                json!(round3(lat[i]))
            }
        };
        let final_json: Map<String, Value> = final_
            .iter()
            .map(|(n, v)| {
                (
                    n.clone(),
                    match v {
                        Some((r, m)) => json!([[r.0, r.1], m]),
                        None => Value::Null,
                    },
                )
            })
            .collect();
        json!({
            "latency_p50_s": pct(0.5),
            "latency_p99_s": pct(0.99),
            "latency_max_s": lat.last().map_or(Value::Null, |&x| json!(round3(x))),
            "processes": self.procs.len(),
            "crashed": self.procs.iter().filter(|p| p.crashed).count(),
            "outsiders": self.procs.iter().filter(|p| p.outsider).count(),
            "sent": self.sent.len(),
            "sent_by_staying": self.sent.values()
                .filter(|(sp, _, _)| staying_pids.contains(&self.procs[*sp].pid())).count(),
            "deliveries": self.deliveries.values().map(Vec::len).sum::<usize>(),
            "delivered_messages": self.deliveries.len(),
            "lost": lost.len(),
            "lost_examples": examples.into_iter().take(20).collect::<Vec<_>>(),
            "regular_configurations": self.ring_members.len(),
            "final": final_json,
        })
    }

    fn fault_times(&self, opts: &CheckOptions) -> Vec<Value> {
        let t0 = self
            .procs
            .iter()
            .map(|p| p.start_t)
            .reduce(f64::min)
            .unwrap_or(0.0);
        let faults = &opts.faults;
        let mut out = Vec::new();
        for (n, f) in faults.iter().enumerate() {
            let tf = f.t;
            let nxt = faults.get(n + 1).map_or(INF, |g| g.t);
            let mut firsts = Vec::new();
            for p in self.procs.iter().filter(|p| !p.outsider) {
                let end = p.end_t.unwrap_or(INF);
                let first = p
                    .configs
                    .iter()
                    .filter(|c| c.kind == Kind::Regular && tf < c.t && c.t < nxt && c.t < end)
                    .map(|c| c.t)
                    .reduce(f64::min);
                if let Some(x) = first {
                    firsts.push(x);
                }
            }
            let mut o = f.detail.clone();
            o.insert("at".into(), json!(tf - t0));
            let (lo, hi) = (
                firsts.iter().copied().reduce(f64::min),
                firsts.iter().copied().reduce(f64::max),
            );
            o.insert(
                "first_regular_s".into(),
                lo.map_or(Value::Null, |x| json!(x - tf)),
            );
            o.insert(
                "all_regular_s".into(),
                hi.map_or(Value::Null, |x| json!(x - tf)),
            );
            o.insert("nodes_reconfigured".into(), json!(firsts.len()));
            o.insert(
                "bound_s".into(),
                json!((opts.token_ms + opts.consensus_ms) as f64 / 1000.0),
            );
            out.push(Value::Object(o));
        }
        out
    }
}
