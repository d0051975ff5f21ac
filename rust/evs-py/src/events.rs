//! The event value types handed to Python: `evs.Message`, `evs.ConfigChange`,
//! `evs.GroupChange`, `evs.RingId` and the enums `evs.Guarantee` and `evs.ConfigKind`.
//!
//! They are frozen native classes: made without calling Python code, hashable, comparable,
//! with a readable `repr`. A message keeps its payload as the runtime's reference-counted
//! buffer; the `bytes` object is made when `data` is read.

use bytes::Bytes;
use evs::{ConfigKind, Event, Guarantee, NodeId, RingId};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

/// How far a message's delivery waits: `AGREED` (total order) or `SAFE` (total order, and
/// every member of the configuration holds the message).
#[pyclass(
    eq,
    eq_int,
    frozen,
    hash,
    name = "Guarantee",
    module = "evs",
    from_py_object
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PyGuarantee {
    #[pyo3(name = "AGREED")]
    Agreed = 0,
    #[pyo3(name = "SAFE")]
    Safe = 1,
}

impl From<Guarantee> for PyGuarantee {
    fn from(g: Guarantee) -> Self {
        match g {
            Guarantee::Agreed => PyGuarantee::Agreed,
            Guarantee::Safe => PyGuarantee::Safe,
        }
    }
}

impl From<PyGuarantee> for Guarantee {
    fn from(g: PyGuarantee) -> Self {
        match g {
            PyGuarantee::Agreed => Guarantee::Agreed,
            PyGuarantee::Safe => Guarantee::Safe,
        }
    }
}

/// The kind of a configuration change: `TRANSITIONAL` closes a ring, `REGULAR` opens one.
#[pyclass(
    eq,
    eq_int,
    frozen,
    hash,
    name = "ConfigKind",
    module = "evs",
    from_py_object
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PyConfigKind {
    #[pyo3(name = "TRANSITIONAL")]
    Transitional = 0,
    #[pyo3(name = "REGULAR")]
    Regular = 1,
}

/// Identifies a ring: its representative (lowest node id) and sequence number.
#[pyclass(frozen, eq, ord, hash, name = "RingId", module = "evs", from_py_object)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PyRingId {
    // Field order gives the ordering: by sequence first (rings are numbered upward).
    /// Sequence number of the ring (rings are numbered upward; ring ids order by it first).
    #[pyo3(get)]
    seq: u64,
    /// Node id of the ring's representative (its lowest member).
    #[pyo3(get)]
    rep: u32,
}

#[pymethods]
impl PyRingId {
    #[new]
    fn new(rep: u32, seq: u64) -> Self {
        PyRingId { seq, rep }
    }

    fn __repr__(&self) -> String {
        format!("RingId(rep={}, seq={})", self.rep, self.seq)
    }

    fn __str__(&self) -> String {
        format!("{}.{}", self.rep, self.seq)
    }
}

impl From<RingId> for PyRingId {
    fn from(r: RingId) -> Self {
        PyRingId {
            seq: r.seq,
            rep: r.rep,
        }
    }
}

/// Python-style `repr` of a byte string, cut after `limit` bytes.
pub fn bytes_repr(b: &[u8], limit: usize) -> String {
    let mut s = String::from("b'");
    for &c in b.iter().take(limit) {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\'' => s.push_str("\\'"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push('\'');
    if b.len() > limit {
        s.push_str(&format!("...({} bytes)", b.len()));
    }
    s
}

fn groups_repr(groups: &[Bytes]) -> String {
    let parts: Vec<String> = groups.iter().map(|g| bytes_repr(g, 32)).collect();
    format!(
        "({}{})",
        parts.join(", "),
        if groups.len() == 1 { "," } else { "" }
    )
}

fn ids_tuple<'py>(py: Python<'py>, ids: &[NodeId]) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, ids)
}

/// A message delivered to a handle: who sent it (node and handle), to which groups, the
/// payload, where it sits in the total order (`ring_id`, `seq`, `index`: unique, ordered like
/// the agreed order) and its guarantee.
#[pyclass(frozen, eq, hash, name = "Message", module = "evs")]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PyMessage {
    /// Node id of the node that multicast the message.
    #[pyo3(get)]
    sender: NodeId,
    /// Id, on the sending node, of the handle that multicast the message.
    #[pyo3(get)]
    sender_handle: u32,
    groups: Vec<Bytes>,
    data: Bytes,
    /// The ring on which the message was ordered.
    #[pyo3(get)]
    ring_id: PyRingId,
    /// Sequence number, on `ring_id`, of the packet that completed the message.
    #[pyo3(get)]
    seq: u64,
    /// Position among the messages that packet completed: `(ring_id, seq, index)` is unique
    /// and ordered like the agreed order.
    #[pyo3(get)]
    index: u32,
    /// `AGREED` or `SAFE`, as the sender asked.
    #[pyo3(get)]
    guarantee: PyGuarantee,
}

#[pymethods]
impl PyMessage {
    #[new]
    #[allow(clippy::too_many_arguments)] // the Python constructor takes every field
    #[pyo3(signature = (sender, groups, data, ring_id, seq, guarantee = PyGuarantee::Agreed, sender_handle = 0, index = 0))]
    fn new(
        sender: NodeId,
        groups: Vec<Vec<u8>>,
        data: Vec<u8>,
        ring_id: PyRingId,
        seq: u64,
        guarantee: PyGuarantee,
        sender_handle: u32,
        index: u32,
    ) -> Self {
        PyMessage {
            sender,
            sender_handle,
            groups: groups.into_iter().map(Bytes::from).collect(),
            data: Bytes::from(data),
            ring_id,
            seq,
            index,
            guarantee,
        }
    }

    /// The groups the sender addressed, as it named them.
    #[getter]
    fn groups<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.groups.iter().map(|g| PyBytes::new(py, g)))
    }

    /// The payload.
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.data)
    }

    fn __len__(&self) -> usize {
        self.data.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "Message(sender={}, sender_handle={}, groups={}, data={}, ring_id={}, seq={}, index={}, guarantee={})",
            self.sender,
            self.sender_handle,
            groups_repr(&self.groups),
            bytes_repr(&self.data, 48),
            PyRingId::__str__(&self.ring_id),
            self.seq,
            self.index,
            if self.guarantee == PyGuarantee::Safe { "SAFE" } else { "AGREED" },
        )
    }
}

/// A configuration change of the ring, delivered to every handle.
#[pyclass(frozen, eq, hash, name = "ConfigChange", module = "evs")]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PyConfigChange {
    /// `TRANSITIONAL` (closes the old ring) or `REGULAR` (opens the new one).
    #[pyo3(get)]
    kind: PyConfigKind,
    /// The ring being installed (for a transitional configuration: the ring that follows).
    #[pyo3(get)]
    ring_id: PyRingId,
    members: Vec<NodeId>,
    left: Vec<NodeId>,
    joined: Vec<NodeId>,
}

#[pymethods]
impl PyConfigChange {
    #[new]
    #[pyo3(signature = (kind, ring_id, members, left = Vec::new(), joined = Vec::new()))]
    fn new(
        kind: PyConfigKind,
        ring_id: PyRingId,
        members: Vec<NodeId>,
        left: Vec<NodeId>,
        joined: Vec<NodeId>,
    ) -> Self {
        PyConfigChange {
            kind,
            ring_id,
            members,
            left,
            joined,
        }
    }

    /// Node ids of the configuration, ascending.
    #[getter]
    fn members<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        ids_tuple(py, &self.members)
    }

    /// Nodes that left (transitional configurations).
    #[getter]
    fn left<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        ids_tuple(py, &self.left)
    }

    /// Nodes that joined (regular configurations).
    #[getter]
    fn joined<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        ids_tuple(py, &self.joined)
    }

    fn __repr__(&self) -> String {
        format!(
            "ConfigChange({}, ring_id={}, members={:?}, left={:?}, joined={:?})",
            match self.kind {
                PyConfigKind::Transitional => "TRANSITIONAL",
                PyConfigKind::Regular => "REGULAR",
            },
            PyRingId::__str__(&self.ring_id),
            self.members,
            self.left,
            self.joined,
        )
    }
}

/// The membership of a group this handle belongs to (or just left) changed. Members are
/// `(node_id, handle_id)` pairs, sorted.
#[pyclass(frozen, eq, hash, name = "GroupChange", module = "evs")]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PyGroupChange {
    group: Bytes,
    members: Vec<(NodeId, u32)>,
    joined: Vec<(NodeId, u32)>,
    left: Vec<(NodeId, u32)>,
}

fn pairs<'py>(py: Python<'py>, v: &[(NodeId, u32)]) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, v)
}

#[pymethods]
impl PyGroupChange {
    #[new]
    #[pyo3(signature = (group, members, joined = Vec::new(), left = Vec::new()))]
    fn new(
        group: Vec<u8>,
        members: Vec<(NodeId, u32)>,
        joined: Vec<(NodeId, u32)>,
        left: Vec<(NodeId, u32)>,
    ) -> Self {
        PyGroupChange {
            group: Bytes::from(group),
            members,
            joined,
            left,
        }
    }

    /// The group whose membership changed.
    #[getter]
    fn group<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.group)
    }

    /// The group's members after the change, as sorted `(node_id, handle_id)` pairs.
    #[getter]
    fn members<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        pairs(py, &self.members)
    }

    /// Members that joined with this change.
    #[getter]
    fn joined<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        pairs(py, &self.joined)
    }

    /// Members that left with this change (a leave, a closed handle or a departed node).
    #[getter]
    fn left<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        pairs(py, &self.left)
    }

    fn __repr__(&self) -> String {
        format!(
            "GroupChange(group={}, members={:?}, joined={:?}, left={:?})",
            bytes_repr(&self.group, 32),
            self.members,
            self.joined,
            self.left
        )
    }
}

/// Converts one runtime event into its Python object.
pub fn to_py(py: Python<'_>, ev: Event) -> PyResult<Py<PyAny>> {
    Ok(match ev {
        Event::Message {
            sender,
            sender_handle,
            groups,
            data,
            ring_id,
            seq,
            index,
            guarantee,
        } => Py::new(
            py,
            PyMessage {
                sender,
                sender_handle,
                groups,
                data,
                ring_id: ring_id.into(),
                seq,
                index,
                guarantee: guarantee.into(),
            },
        )?
        .into_any(),
        Event::ConfigChange {
            kind,
            ring_id,
            members,
            left,
            joined,
        } => Py::new(
            py,
            PyConfigChange {
                kind: match kind {
                    ConfigKind::Transitional => PyConfigKind::Transitional,
                    ConfigKind::Regular => PyConfigKind::Regular,
                },
                ring_id: ring_id.into(),
                members,
                left,
                joined,
            },
        )?
        .into_any(),
        Event::GroupChange {
            group,
            members,
            joined,
            left,
        } => Py::new(
            py,
            PyGroupChange {
                group,
                members,
                joined,
                left,
            },
        )?
        .into_any(),
    })
}

#[cfg(test)]
mod tests {
    use super::bytes_repr;

    #[test]
    fn bytes_repr_is_pythons() {
        assert_eq!(bytes_repr(b"ab'\\\n\x00\xff", 64), r"b'ab\'\\\n\x00\xff'");
        assert_eq!(bytes_repr(b"abcdef", 3), "b'abc'...(6 bytes)");
    }
}
