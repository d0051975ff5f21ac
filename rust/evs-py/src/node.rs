//! `evs._evs.Node`: one running EVS node (its own runtime thread), and its statistics.

use evs::config::{NodeConfig, NodeConfigBuilder};
use evs::{EvsError, Node, NodeStats};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::errors::{config_error, evs_error, new_error, node_error};
use crate::events::PyRingId;
use crate::fork::Owned;

/// Converts a Python setting value to the TOML value the configuration builder takes:
/// bool, int, float, str, list/tuple and dict (of str keys). `None` of another type is a
/// `ConfigError` naming the key.
fn to_toml(py: Python<'_>, key: &str, v: &Bound<'_, PyAny>) -> PyResult<toml::Value> {
    let bad = |what: String| {
        let e = new_error(py, "ConfigError", format!("'{key}': {what}"));
        let _ = e.value(py).setattr("key", key);
        e
    };
    if v.is_instance_of::<PyBool>() {
        return Ok(toml::Value::Boolean(v.extract::<bool>()?));
    }
    if v.is_instance_of::<PyInt>() {
        return match v.extract::<i64>() {
            Ok(i) => Ok(toml::Value::Integer(i)),
            Err(_) => Err(bad(format!("integer {v} out of range"))),
        };
    }
    if v.is_instance_of::<PyFloat>() {
        return Ok(toml::Value::Float(v.extract::<f64>()?));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(toml::Value::String(s.to_cow()?.into_owned()));
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for item in v.try_iter()? {
            out.push(to_toml(py, key, &item?)?);
        }
        return Ok(toml::Value::Array(out));
    }
    if let Ok(d) = v.cast::<PyDict>() {
        let mut t = toml::Table::new();
        for (k, val) in d.iter() {
            let Ok(k) = k.extract::<String>() else {
                return Err(bad("table keys must be strings".into()));
            };
            let sub = format!("{key}.{k}");
            t.insert(k, to_toml(py, &sub, &val)?);
        }
        return Ok(toml::Value::Table(t));
    }
    Err(bad(format!(
        "unsupported value type {}",
        v.get_type().name()?
    )))
}

/// Builds a configuration from an optional TOML file and `(key, value)` settings applied in
/// order over it.
pub fn build_config(
    py: Python<'_>,
    path: Option<&str>,
    settings: &Bound<'_, PyAny>,
) -> PyResult<NodeConfig> {
    let mut b = match path {
        Some(p) => NodeConfigBuilder::from_file(p).map_err(|e| config_error(py, &e))?,
        None => NodeConfig::builder(),
    };
    for item in settings.try_iter()? {
        let item = item?;
        let (key, value): (String, Bound<'_, PyAny>) = item.extract()?;
        let v = to_toml(py, &key, &value)?;
        b.set_value(&key, v).map_err(|e| config_error(py, &e))?;
    }
    b.build().map_err(|e| config_error(py, &e))
}

/// `NodeStoppedError` for a call that needs a running node.
fn stopped(py: Python<'_>) -> PyErr {
    new_error(
        py,
        "NodeStoppedError",
        "node stopped: it was shut down (start a new evs.Node)".into(),
    )
}

/// A running node. Shut down by `shutdown()` or when garbage-collected. In the child of a
/// fork it refuses every call that needs its runtime (see [`crate::fork`]).
#[pyclass(frozen, name = "Node", module = "evs._evs")]
pub struct PyNode {
    node: Owned<Node>,
    config: NodeConfig,
    /// Copies of the node's fixed identity, readable in a fork child too.
    node_id: u32,
    local_addr: std::net::SocketAddr,
}

impl PyNode {
    /// The node, or `NodeStoppedError` in a fork child.
    fn node(&self, py: Python<'_>) -> PyResult<&Node> {
        self.node.get(py, "node")
    }

    /// A new handle of this node with an event queue of `capacity` events (None: 16384).
    pub(crate) fn new_handle(
        &self,
        py: Python<'_>,
        capacity: Option<usize>,
    ) -> PyResult<evs::Handle> {
        let node = self.node(py)?;
        if !node.is_running() {
            return Err(stopped(py));
        }
        match capacity {
            None => node.handle(),
            Some(c) => node.handle_with_capacity(c),
        }
        .map_err(|e| evs_error(py, e))
    }
}

#[pymethods]
impl PyNode {
    /// Starts a node from `config_path` (a TOML file, or None) and `settings`, a sequence
    /// of `(key, value)` pairs applied over the file.
    #[new]
    #[pyo3(signature = (config_path = None, settings = None))]
    fn new(
        py: Python<'_>,
        config_path: Option<&str>,
        settings: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let empty = PyList::empty(py);
        let settings = settings.unwrap_or(empty.as_any());
        let config = build_config(py, config_path, settings)?;
        let node = py
            .detach(|| Node::start_standalone(&config))
            .map_err(|e| node_error(py, e))?;
        Ok(PyNode {
            node_id: node.id(),
            local_addr: node.local_addr(),
            node: Owned::new(node),
            config,
        })
    }

    /// This node's id.
    #[getter]
    fn node_id(&self) -> u32 {
        self.node_id
    }

    /// The address the node's socket is bound to, as `(host, port)`.
    #[getter]
    fn local_addr(&self) -> (String, u16) {
        let a = self.local_addr;
        (a.ip().to_string(), a.port())
    }

    /// The effective configuration as TOML text.
    #[getter]
    fn config_toml(&self) -> String {
        self.config.to_toml_string()
    }

    /// The largest application message, in bytes (`max_message_size`).
    #[getter]
    fn max_message_size(&self) -> usize {
        self.config.max_message_size()
    }

    /// The cluster name.
    #[getter]
    fn cluster_name(&self) -> String {
        self.config.cluster_name().to_owned()
    }

    /// False once the node has shut down (and in the child of a fork).
    #[getter]
    fn is_running(&self) -> bool {
        self.node.get_here().is_some_and(Node::is_running)
    }

    /// `(node_id, members)` of the last regular configuration.
    fn membership(&self, py: Python<'_>) -> PyResult<(u32, Vec<u32>)> {
        Ok(self.node(py)?.membership())
    }

    /// The ring of the last regular configuration.
    fn ring_id(&self, py: Python<'_>) -> PyResult<PyRingId> {
        Ok(self.node(py)?.ring_id().into())
    }

    /// The replicated group view: group -> sorted `(node_id, handle_id)` members.
    fn group_view<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (g, members) in self.node(py)?.group_view() {
            d.set_item(PyBytes::new(py, &g), members)?;
        }
        Ok(d)
    }

    /// Counters and state, as a dict (see `NodeStats` of the Rust crate).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let node = self.node(py)?;
        let s = py.detach(|| node.stats()).map_err(|e| match e {
            EvsError::Closed => stopped(py),
            e => evs_error(py, e),
        })?;
        stats_dict(py, &s)
    }

    /// Fault injection: drop every frame from the nodes in `from_nodes` (empty: none).
    fn isolate_from(&self, py: Python<'_>, from_nodes: Vec<u32>) -> PyResult<()> {
        self.node(py)?.isolate_from(&from_nodes);
        Ok(())
    }

    /// Fault injection: drop each received datagram with probability `percent`/100.
    fn set_receive_loss(&self, py: Python<'_>, percent: u8) -> PyResult<()> {
        self.node(py)?.set_receive_loss(percent);
        Ok(())
    }

    /// Leaves the ring and stops the node's thread. Its handles return the events queued
    /// before the stop, then raise HandleClosedError. Idempotent. In the child of a fork it
    /// does nothing (the node is the parent's).
    fn shutdown(&self, py: Python<'_>) {
        if let Some(node) = self.node.get_here() {
            py.detach(|| node.shutdown());
        }
    }

    fn __repr__(&self) -> String {
        let Some(node) = self.node.get_here() else {
            return format!(
                "<evs Node {} at {} (inherited across fork: unusable here)>",
                self.node_id, self.local_addr
            );
        };
        let (id, members) = node.membership();
        format!(
            "<evs Node {id} at {} ring {} members {members:?}{}>",
            self.local_addr,
            node.ring_id(),
            if node.is_running() { "" } else { " (stopped)" }
        )
    }
}

fn stats_dict<'py>(py: Python<'py>, s: &NodeStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("node_id", s.node_id)?;
    d.set_item("ring_id", PyRingId::from(s.ring_id))?;
    d.set_item("members", s.members.clone())?;
    d.set_item("state", format!("{:?}", s.state).to_lowercase())?;
    let t = &s.totem;
    const TYPES: [&str; 6] = [
        "orf_token",
        "mcast",
        "merge_detect",
        "join",
        "commit_token",
        "token_hold_cancel",
    ];
    let per_type = |p: &totem::stats::PerType| -> PyResult<Bound<'py, PyDict>> {
        let x = PyDict::new(py);
        for (i, name) in TYPES.iter().enumerate() {
            x.set_item(*name, p.0[i])?;
        }
        Ok(x)
    };
    d.set_item("packets_in", per_type(&t.packets_in)?)?;
    d.set_item("packets_out", per_type(&t.packets_out)?)?;
    for (k, v) in [
        ("messages_submitted", t.messages_submitted),
        ("messages_delivered", t.messages_delivered),
        ("bytes_delivered", t.bytes_delivered),
        ("retransmits_requested", t.retransmits_requested),
        ("retransmits_sent", t.retransmits_sent),
        ("token_retransmits", t.token_retransmits),
        ("token_rotations", t.token_rotations),
        ("rings_formed", t.rings_formed),
        ("token_lost", t.token_lost),
        ("consensus_timeouts", t.consensus_timeouts),
        ("failed_to_receive", t.failed_to_receive),
        ("probes_sent", t.probes_sent),
        ("quarantined", t.quarantined as u64),
        ("crypto_accepted", s.crypto_accepted),
        ("own_frames_dropped", s.own_frames_dropped),
        ("isolated_dropped", s.isolated_dropped),
        ("loss_injected", s.loss_injected),
        ("events_queued", s.events_queued),
        ("handles_overflowed", s.handles_overflowed),
        ("datagrams_in", s.transport.datagrams_in),
        ("datagrams_out", s.transport.datagrams_out),
        ("bytes_in", s.transport.bytes_in),
        ("bytes_out", s.transport.bytes_out),
        ("recv_syscalls", s.transport.recv_syscalls),
        ("send_syscalls", s.transport.send_syscalls),
    ] {
        d.set_item(k, v)?;
    }
    d.set_item("token_rotation_s", s.token_rotation().as_secs_f64())?;
    d.set_item("last_rotation_s", t.last_rotation.as_secs_f64())?;
    let rejected = PyDict::new(py);
    for (k, v) in s.rejected() {
        rejected.set_item(k, v)?;
    }
    d.set_item("rejected", rejected)?;
    d.set_item("queue_depths", s.queue_depths.clone())?;
    d.set_item("send_budget_used", s.send_budget_used)?;
    d.set_item("send_budget_cap", s.send_budget_cap)?;
    d.set_item("pending_submits", s.pending_submits)?;
    d.set_item("delivery_buffered", s.delivery_buffered)?;
    d.set_item("delivery_buffered_peak", s.delivery_buffered_peak)?;
    d.set_item("delivery_buffer_limit", s.delivery_buffer_limit)?;
    d.set_item("send_queue_messages", t.send_queue_messages)?;
    d.set_item("sort_queue_len", t.sort_queue_len)?;
    Ok(d)
}
